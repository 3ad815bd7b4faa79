"""The --wait progress line in a real terminal.

A cloud runs as a process of its own (``godwit-all`` with a configuration
file, as the README starts it), with a simulated network slow enough that a
live migration of m1.tiny takes a few seconds. ``godwit server live-migrate
--wait`` runs inside tmux (a pseudo-terminal, so stderr is a TTY), and the
test reads the screen with ``tmux capture-pane`` while the move runs and
after it ended: one line rewritten in place with the progress fields, then
the outcome. tools/ensure-host-plumbing.sh installs tmux.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
import requests

from godwit.testing import Client, wait_for

BIN = os.path.dirname(sys.executable)
TMUX = shutil.which("tmux")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def godwit_all(tmp_path):
    """``godwit-all`` in a process of its own; its API's URL."""
    port = _free_port()
    conf = tmp_path / "godwit.conf"
    conf.write_text(f"""[DEFAULT]
state_path = {tmp_path / "state"}
[api]
port = {port}
[fake]
# 256 MiB/s: about two seconds for m1.tiny's 512 MiB.
migration_bandwidth_mb = 256
[libvirt]
live_migration_monitor_interval = 0.1
""")
    log = open(tmp_path / "godwit-all.log", "w")
    proc = subprocess.Popen([os.path.join(BIN, "godwit-all"), "--config-file", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v2.1"

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"godwit-all exited with {proc.returncode}; see {log.name}")
        try:
            return requests.get(url + "/", timeout=1).ok
        except requests.ConnectionError:
            return False
    try:
        wait_for("godwit-all's API", up, timeout=60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def tmux():
    """Run commands in a detached tmux session on a server of this test's own."""
    assert TMUX, "tmux is not installed (tools/ensure-host-plumbing.sh installs it)"
    socket_name = f"godwit-test-{uuid.uuid4().hex[:8]}"

    def run(*args):
        return subprocess.run([TMUX, "-L", socket_name, *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout
    yield run
    subprocess.run([TMUX, "-L", socket_name, "kill-server"], capture_output=True, timeout=30)


def test_live_migrate_wait_progress_line_in_a_terminal(godwit_all, tmux):
    client = Client(godwit_all)
    sid = client.create_server("vm1", flavor="1", host="compute1")["id"]
    assert client.server(sid)["status"] == "ACTIVE"
    # COLUMNS: the detached pane is 120 wide, but its pty says 80 to the
    # process (seen with tmux 3.3a), and the line is up to 105 characters.
    command = (f"COLUMNS=120 {os.path.join(BIN, 'godwit')} --os-endpoint {godwit_all} server "
               f"live-migrate {sid} --host compute2 --wait -f value -c status; "
               "echo EXIT=$?; sleep 60")
    tmux("new-session", "-d", "-s", "move", "-x", "120", "-y", "20", command)

    screens = []

    def ended():
        screen = tmux("capture-pane", "-p", "-t", "move")
        screens.append(screen)
        return "EXIT=" in screen
    wait_for("the live migration to end on the terminal", ended, timeout=60, interval=0.1)

    m = client.latest_migration(sid)
    label = f"live-migration {m['id']}"
    # While it ran: one line, rewritten in place, with every field the API feeds.
    running = [s for s in screens if f"{label}: running" in s]
    assert running, screens
    for screen in running:
        lines = [line for line in screen.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"{label}: running"), screen
    fields = " ".join(running)
    assert "%" in fields and "MiB left" in fields and "MiB/s" in fields and "ETA " in fields, \
        running
    # The dirty rate and the max downtime, from the timeline (none dirtied; the
    # monitor's first step); each line still ends with the time waited.
    assert "dirty 0 B/s" in fields and "max downtime 50 ms" in fields, running
    for screen in running:
        assert re.search(r"  \d+s$", screen.strip()), screen
    percents = [int(word[:-1]) for s in running for word in s.split() if word.endswith("%")]
    assert percents == sorted(percents) and percents[-1] > percents[0], percents
    # At the end: the last progress line, the outcome, stdout's value, the exit code.
    final = [line for line in screens[-1].splitlines() if line.strip()]
    assert final[0].startswith(f"{label}: "), final
    assert final[1].startswith(f"{label} completed: compute1 -> compute2 after "), final
    assert final[2:] == ["completed", "EXIT=0"], final
    assert client.server(sid)["OS-EXT-SRV-ATTR:host"] == "compute2"

    # The move's timeline, as a table in the same terminal.
    command = (f"{os.path.join(BIN, 'godwit')} --os-endpoint {godwit_all} migration "
               f"timeline {sid} {m['id']}; echo EXIT=$?; sleep 60")
    tmux("new-session", "-d", "-s", "timeline", "-x", "160", "-y", "60", command)
    screen = wait_for("the timeline on the terminal", lambda: (
        lambda s: s if "EXIT=" in s else None)(tmux("capture-pane", "-p", "-t", "timeline")),
        timeout=30, interval=0.1)
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in screen.splitlines() if line.startswith("| +")]
    # The destination's pre-check is asked while the move is recorded (decision
    # 34): it may be stamped before 'accepted'.
    assert sorted(tuple(r[1:3]) for r in rows[:2]) == [
        ("phase", "accepted"), ("step", "check_can_live_migrate_destination")], screen
    assert rows[0][0] == "+0.000s", screen
    phases = [r[2] for r in rows if r[1] == "phase"]
    assert phases == ["accepted", "queued", "preparing", "running", "post-migrating",
                      "completed"], screen
    steps = {(r[2], r[3]) for r in rows if r[1] == "step"}
    assert {("pre_live_migration", "compute2"), ("live_migration_start", "compute1"),
            ("post_live_migration_at_source", "compute1")} <= steps, screen
    assert all(r[4].endswith(" ms") and r[5] == "ok" for r in rows if r[1] == "step"), screen
    times = [float(r[0][1:-1]) for r in rows]
    assert times == sorted(times) and times[-1] > 1.0, times   # about 2 s of transfer
    assert any(r[1] == "progress" and "%" in r[5] for r in rows), screen
    assert "EXIT=0" in screen
