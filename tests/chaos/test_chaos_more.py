"""Chaos beyond the matrix: the API killed between an intent and its wake-up, the
broker restarted under load, three conductors killed in turn, gentle stops.

Real processes over RabbitMQ and PostgreSQL (tests/chaos/harness.py), default
timeouts unless a test says otherwise, every move checked as the matrix checks
it: a final status (no 'error'), the guest on exactly one host and the
database saying which, nothing left elsewhere.
"""

import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from godwit.testing import APIError, Client, wait_for
from godwit.timeutils import utcnow
from tests.chaos import matrix as mx
from tests.chaos import runner
from tests.chaos.harness import free_port

FINAL = ("completed", "failed", "cancelled", "confirmed", "reverted", "error")
DOWN_TIME = 20


def latest(cloud, sid):
    rows = cloud.db.migration_list({"instance_uuid": sid})
    return rows[0] if rows else None


def settled(cloud, sid, statuses=FINAL, timeout=mx.SETTLE):
    """The newest migration of ``sid`` once in ``statuses`` and not awaiting a host."""
    return wait_for(f"the move of {sid} to settle", lambda: (
        lambda m: m if m and m["status"] in statuses and not m["awaiting_hosts"] else None)(
        latest(cloud, sid)), timeout=timeout, interval=0.2)


def assert_only_on(cloud, sid, host):
    """The guest runs on ``host`` only, the database agrees, nothing is left elsewhere."""
    server = cloud.client.server(sid)
    assert server["OS-EXT-SRV-ATTR:host"] == host, (server["OS-EXT-SRV-ATTR:host"], host)
    assert server["OS-EXT-STS:task_state"] is None, server["OS-EXT-STS:task_state"]
    dom = cloud.fake(host).get("domains", sid)
    assert dom is not None and not dom.get("incoming") and not dom.get("switched_out"), dom
    for other in cloud.hosts:
        if other != host:
            wait_for(f"nothing of {sid} left on {other}",
                     lambda other=other: cloud.fake(other).is_empty_for(sid), timeout=60,
                     interval=0.2)


def assert_no_orphans(cloud):
    found = runner.orphans(cloud)
    assert not found, f"the reconciler found orphans: {found}"


def crashed(fn, *args):
    """Call the API expecting it to die on the way (the connection drops)."""
    try:
        fn(*args)
    except requests.ConnectionError as e:   # a dead API answers nothing
        return e
    raise AssertionError("the API answered; its fault did not fire")


# --- the API killed between recording an intent and waking the conductor -----------------
def test_api_killed_between_the_intent_and_its_wake_up(chaos_cloud):
    """Each intent is written, then the API dies before it wakes the conductor: the
    conductor's sweep carries it out anyway. The API is started again between them."""
    a, b = "host-a", "host-b"
    cloud = chaos_cloud(hosts=(a, b), options={"DEFAULT": {
        "max_concurrent_live_migrations": 0}}, host_options={a: {"fake": {
            "migration_bandwidth_mb": 16}}})
    c = cloud.client
    servers = {k: c.create_server(f"api-{k}", host=a)["id"]
               for k in ("abort", "force", "confirm", "revert", "stop", "reboot")}

    os.makedirs(f"{cloud.state_path}/api-faults", exist_ok=True)

    def with_api_crash(name, point, fn, *args):
        with open(f"{cloud.state_path}/api-faults/faults.json", "w") as f:
            f.write(f'["intent.{point}@{servers[name]}:crash::once"]')
        crashed(fn, *args)
        wait_for("the API to die at its fault", lambda: not cloud.alive("api"), timeout=10)
        cloud.start_service("api", wait=True)

    # abort and force-complete of slow live migrations (about 32 s each at 16 MiB/s)
    for name in ("abort", "force"):
        c.live_migrate(servers[name], host=b)
        wait_for(f"{name}: running", lambda name=name: (lambda m: m and m["status"] ==
                 "running")(latest(cloud, servers[name])), timeout=60, interval=0.1)
    m = latest(cloud, servers["abort"])
    with_api_crash("abort", "abort", c.abort_migration, servers["abort"], m["id"])
    m = latest(cloud, servers["force"])
    with_api_crash("force", "force_complete", c.force_complete, servers["force"], m["id"])
    # confirm and revert of finished cold migrations
    for name in ("confirm", "revert"):
        c.action(servers[name], "migrate", {"host": b})
        settled(cloud, servers[name], ("finished",))
    with_api_crash("confirm", "confirm", c.action, servers["confirm"], "confirmResize", None,
                   204)
    with_api_crash("revert", "revert", c.action, servers["revert"], "revertResize")
    # stop and reboot
    with_api_crash("stop", "stop", c.action, servers["stop"], "os-stop")
    with_api_crash("reboot", "reboot", c.action, servers["reboot"], "reboot",
                   {"type": "HARD"})

    assert settled(cloud, servers["abort"])["status"] == "cancelled"
    assert_only_on(cloud, servers["abort"], a)
    m = settled(cloud, servers["force"])
    assert m["status"] == "completed", m
    assert json.loads(m["step_data"])["migrate_data"]["forced"] == "paused", m["step_data"]
    assert_only_on(cloud, servers["force"], b)
    assert settled(cloud, servers["confirm"])["status"] == "confirmed"
    assert_only_on(cloud, servers["confirm"], b)
    assert settled(cloud, servers["revert"])["status"] == "reverted"
    assert_only_on(cloud, servers["revert"], a)
    # Power requests left waiting are carried out by the sweep (after two host
    # step timeouts without news).
    c.wait_vm(servers["stop"], "SHUTOFF", timeout=90)
    assert cloud.fake(a).get("domains", servers["stop"])["power_state"] == 4
    wait_for("the hard reboot", lambda: cloud.fake(a).get(
        "domains", servers["reboot"]).get("reboots_hard") == 1, timeout=90)
    server = c.wait_server(servers["reboot"], lambda s: s["OS-EXT-STS:task_state"] is None,
                           timeout=90)
    assert server["status"] == "ACTIVE"
    assert_no_orphans(cloud)


# --- RabbitMQ restarted with 20 live and 10 cold migrations in flight ---------------------
def test_broker_restart_with_thirty_moves_in_flight(chaos_cloud):
    hosts = ("host-a", "host-b", "host-c", "host-d")
    # service_down_time 20 s, not the suite's 6 s: the agents' connections come back
    # with oslo.messaging's reconnection back-off (up to about 10 s after the
    # broker), so 6 s would call healthy hosts down after any outage (the default
    # is 60 s).
    cloud = chaos_cloud(hosts=hosts, options={"DEFAULT": {
        "max_concurrent_live_migrations": 0, "service_down_time": DOWN_TIME}},
        host_options={h: {"fake": {"migration_bandwidth_mb": 64}} for h in hosts})
    c = cloud.client
    live, cold = [], []
    for i in range(20):
        src, dst = hosts[i % 4], hosts[(i + 1) % 4]
        live.append((c.create_server(f"live-{i}", host=src)["id"], src, dst))
    for i in range(10):
        src, dst = hosts[i % 4], hosts[(i + 2) % 4]
        sid = c.create_server(f"cold-{i}", host=src)["id"]
        cold.append((sid, src, dst))
        cloud.arm(src, cloud_faults(cloud, src) + [f"disk_transfer@{sid}:delay:6:once"])
    for sid, _src, dst in live:
        c.live_migrate(sid, host=dst)
    for sid, _src, dst in cold:
        c.action(sid, "migrate", {"host": dst})
    wait_for("moves in flight", lambda: sum(
        (latest(cloud, sid) or {}).get("status") in ("running", "migrating")
        for sid, _s, _d in live + cold) >= 10, timeout=60, interval=0.1)

    # Watch the services' states through the outage and after it.
    # The conductor's look at the broker must stay current through the outage
    # (one per report_interval, 1 s here), or the heartbeats' age alone decides.
    seen_down, stop, stalest = set(), threading.Event(), [0.0]

    def watch():
        while not stop.is_set():
            for h in hosts:
                svc = cloud.db.service_get_by_host(h)
                if svc is not None and not cloud.db.is_host_up(svc, DOWN_TIME):
                    seen_down.add(h)
            checked = (cloud.db.broker_state() or (None,))[0]
            if checked is not None:
                stalest[0] = max(stalest[0], (utcnow() - checked).total_seconds())
            stop.wait(0.5)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        cloud.restart_broker(down=15)
        for sid, _src, dst in live:
            m = settled(cloud, sid)
            assert m["status"] == "completed", m
            assert_only_on(cloud, sid, dst)
        for sid, _src, dst in cold:
            m = settled(cloud, sid, FINAL + ("finished",))
            assert m["status"] == "finished", m
            c.action(sid, "confirmResize", None, 204)
            assert settled(cloud, sid)["status"] == "confirmed"
            assert_only_on(cloud, sid, dst)
        time.sleep(2)
    finally:
        stop.set()
        watcher.join(5)
    assert stalest[0] < DOWN_TIME / 2, f"the conductor's look at the broker was {stalest[0]} s old"
    assert not seen_down, f"hosts shown down because the broker was: {sorted(seen_down)}"
    assert_no_orphans(cloud)


def cloud_faults(cloud, host):
    path = os.path.join(cloud.hosts_path, host, "faults.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


# --- three conductors, one SIGKILLed every few seconds -----------------------------------
def test_three_conductors_one_killed_every_few_seconds(chaos_cloud):
    hosts = tuple(f"host-{i}" for i in range(6))
    conductors = ("cond-a", "cond-b", "cond-c")
    cloud = chaos_cloud(hosts=hosts, conductors=conductors, host_options={
        h: {"fake": {"migration_bandwidth_mb": 128}} for h in hosts})
    c = cloud.client
    rng = random.Random(7)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        servers = list(pool.map(lambda i: (c.create_server(f"m-{i}", host=hosts[i % 6])["id"],
                                           hosts[i % 6]), range(50)))

    stop, kills = threading.Event(), []

    def killer():
        while not stop.wait(rng.uniform(3, 5)):
            victim = rng.choice(conductors)
            cloud.kill(victim)
            kills.append(victim)
            stop.wait(rng.uniform(1, 3))
            cloud.start_service(victim)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    requested = {}

    def request(i, sid, src, dst):
        try:
            if i % 5 == 4:
                c.action(sid, "migrate", {"host": dst})
            else:
                c.live_migrate(sid, host=dst)
        except (APIError, Exception):  # noqa: BLE001 - a conductor died in the request
            pass
    try:
        # Side by side: a request whose conductor dies waits for its timeout.
        for i, (sid, src) in enumerate(servers):
            dst = hosts[(i + 1 + i // 6) % 6] if hosts[(i + 1 + i // 6) % 6] != src \
                else hosts[(i + 2) % 6]
            requested[sid] = (src, dst, i % 5 == 4)
            threading.Thread(target=request, args=(i, sid, src, dst), daemon=True).start()
            time.sleep(0.2)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pending = [sid for sid in requested if (latest(cloud, sid) or {}).get("status")
                       not in FINAL + ("finished",)]
            if not pending:
                break
            time.sleep(1)
    finally:
        stop.set()
        thread.join(30)
    for name in conductors:
        if not cloud.alive(name):
            cloud.start_service(name)
    assert len(kills) >= 5, kills
    for sid, (src, dst, _cold) in requested.items():
        m = latest(cloud, sid)
        if m is None:
            # The request died with its conductor before the move was recorded: the
            # user got an error, and nothing changed.
            assert_only_on(cloud, sid, src)
            continue
        m = settled(cloud, sid, FINAL + ("finished",), timeout=120)
        assert m["status"] != "error", m
        if m["status"] == "finished":
            c.action(sid, "confirmResize", None, 204)
            m = settled(cloud, sid)
        where = dst if m["status"] in ("completed", "confirmed") else src
        assert_only_on(cloud, sid, where)
    assert_no_orphans(cloud)


# --- gentle stops ---------------------------------------------------------------------------
def test_sigterm_hands_moves_over(chaos_cloud):
    """A SIGTERMed conductor exits within the grace period and releases its leases: the
    other conductor finishes its move at once, not after the lease time. A SIGTERMed
    agent leaves its hypervisor job running, and its next process finishes it."""
    a, b = "host-a", "host-b"
    cloud = chaos_cloud(hosts=(a, b), conductors=("cond-a", "cond-b"), options={
        "DEFAULT": {"graceful_shutdown_timeout": 10}},
        host_options={a: {"fake": {"migration_bandwidth_mb": 32}}})
    c = cloud.client
    held = c.create_server("held", host=a)["id"]
    cloud.arm(b, [f"pre_live_migration@{held}:delay:8:once"])
    c.live_migrate(held, host=b)
    m = wait_for("preparing", lambda: (lambda m: m if m and m["status"] == "preparing"
                                       else None)(latest(cloud, held)), timeout=60)
    owner = cloud.db.migration_get(m["id"])["owner"]
    start = time.monotonic()
    assert cloud.terminate(owner, timeout=30) == 0
    assert time.monotonic() - start < 20, "the stop took longer than the grace period"
    row = cloud.db.migration_get(m["id"])
    # Handed over: no owner (or already the other conductor), and it ends well
    # before its 30 s lease would have run out.
    assert row["owner"] in (None, "cond-b" if owner == "cond-a" else "cond-a"), row
    m = settled(cloud, held, timeout=25)
    assert m["status"] == "completed", m
    assert_only_on(cloud, held, b)
    cloud.start_service(owner)

    slow = c.create_server("slow", host=a)["id"]
    c.live_migrate(slow, host=b)
    wait_for("the job running", lambda: cloud.job_processes(), timeout=60, interval=0.1)
    jobs = cloud.job_processes()
    assert cloud.terminate(a, timeout=30) == 0
    assert set(jobs) <= set(cloud.job_processes()) or settled(cloud, slow, timeout=1), \
        "the job died with its agent"
    cloud.start_service(a)
    m = settled(cloud, slow)
    assert m["status"] == "completed", m
    assert_only_on(cloud, slow, b)
    assert_no_orphans(cloud)


@pytest.mark.parametrize("grace", [5])
def test_godwit_all_stops_within_its_grace_period_during_a_migration(tmp_path, grace):
    """godwit-all, SIGTERMed while a live migration runs, exits within the grace
    period (it used to hang on the migration's threads)."""
    port = free_port()
    conf = tmp_path / "all.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}/state\ngraceful_shutdown_timeout = "
                    f"{grace}\nlog_file = {tmp_path}/all.log\n[api]\nport = {port}\n"
                    "[fake]\nmigration_bandwidth_mb = 8\n")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "godwit-all"),
                             "--config-file", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        client = Client(f"http://127.0.0.1:{port}/v2.1")
        wait_for("godwit-all", lambda: _answers(client), timeout=60)
        sid = client.create_server("vm", host="compute1")["id"]
        client.live_migrate(sid, host="compute2")
        client.wait_status(sid, "running", timeout=30)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(grace + 15) == 0
        assert time.monotonic() - start < grace + 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(client):
    try:
        return client.get("/servers") is not None
    except Exception:  # noqa: BLE001 - not up yet
        return False


# --- the conductor killed during a controller's call ----------------------------------------
def test_conductor_killed_during_a_controllers_call(chaos_cloud):
    """A controller (godwit.controller over RabbitMQ) asks for an abort and a
    confirm; each time the conductor serving the call records the intent and is
    SIGKILLed before it answers. The caller gets a timeout; the conductor started
    again carries the intent out (docs/controller.md)."""
    import oslo_messaging as messaging

    from godwit import controller

    a, b = "host-a", "host-b"
    cloud = chaos_cloud(hosts=(a, b), host_options={a: {"fake": {
        "migration_bandwidth_mb": 8}}})
    c = cloud.client
    ctl = controller.ControllerClient(cloud.rabbit_url, control_exchange=cloud.exchange,
                                      timeout=15)
    try:
        to_abort = c.create_server("ctl-abort", host=a)["id"]
        to_confirm = c.create_server("ctl-confirm", host=a)["id"]
        # The cold migration first: the live one must still run when its abort
        # is asked, however slow the machine is meanwhile.
        ctl.migrate(to_confirm, host=b)
        settled(cloud, to_confirm, ("finished",))
        m = ctl.live_migrate(to_abort, host=b)      # about 64 s at 8 MiB/s
        wait_for("running", lambda: (lambda r: r and r["status"] == "running")(
            latest(cloud, to_abort)), timeout=60, interval=0.1)
        os.makedirs(f"{cloud.state_path}/api-faults", exist_ok=True)

        def killed_during(point, sid, call):
            with open(f"{cloud.state_path}/api-faults/faults.json", "w") as f:
                f.write(f'["intent.{point}@{sid}:hang::once"]')
            outcome = {}

            def run():
                try:
                    outcome["answer"] = call()
                except Exception as e:  # noqa: BLE001 - the outcome is what is checked
                    outcome["error"] = e
            caller = threading.Thread(target=run)
            caller.start()
            wait_for(f"the conductor to hold the {point} call", lambda: (
                f"Injected fault on api: intent.{point} hang"
                in open(cloud.log_path("cond-a"), errors="replace").read()), timeout=30)
            cloud.kill("cond-a")
            caller.join(60)
            assert isinstance(outcome.get("error"), messaging.MessagingTimeout), outcome
            cloud.start_service("cond-a", wait=True)

        killed_during("abort", to_abort, lambda: ctl.abort(to_abort, m["id"]))
        killed_during("confirm", to_confirm, lambda: ctl.confirm_resize(to_confirm))

        assert settled(cloud, to_abort)["status"] == "cancelled"
        assert_only_on(cloud, to_abort, a)
        assert settled(cloud, to_confirm)["status"] == "confirmed"
        assert_only_on(cloud, to_confirm, b)
        assert_no_orphans(cloud)
    finally:
        ctl.close()
