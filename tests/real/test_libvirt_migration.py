"""Live migration through Godwit's API between two real libvirt hosts.

Every test drives Godwit as deployed (API, conductor and two compute agents
as processes, RabbitMQ, PostgreSQL) with ``[compute] virt_driver = libvirt``,
and checks the outcome against the hypervisors themselves: the migration's
status, the instance's host, on which libvirtd the domain exists (exactly
one), and what is left in the instance directories. Guests are 128 MiB TCG
domains sitting in SeaBIOS with a 1 GiB qcow2 root disk.

A "slow" migration is a block migration of a disk holding 6 MiB of data with
``live_migration_bandwidth = 1`` (MiB/s), which libvirt applies to the disk
copy too: about 8 s, long enough to abort or to hit a completion timeout of
1 s/GiB x 4 GiB (RAM and disk each count as at least 2 GiB).
"""

import os
import re
import subprocess
import time

import libvirt
import pytest

from godwit.testing import APIError
from tests.real.hosts import free_port

PATTERN = "0xa5"
PATTERN_OFFSET = "1M"


def create_server(d, host):
    start = time.monotonic()
    server = d.client.create_server("lv-vm", flavor="lv.tiny", host=host)
    assert server["status"] == "ACTIVE", server
    print(f"server ACTIVE on {host} in {time.monotonic() - start:.1f} s")
    return server["id"]


def disk_path(d, host, sid):
    return os.path.join(d.paths[host], sid, "disk")


def write_pattern(d, host, sid, size):
    """Write a known pattern into the guest's disk: stop the domain, qemu-io, start it."""
    conn = d.lv[host].connect()
    try:
        dom = conn.lookupByUUIDString(sid)
        dom.destroy()
        subprocess.run(["qemu-io", "-f", "qcow2", "-c",
                        f"write -P {PATTERN} {PATTERN_OFFSET} {size}",
                        disk_path(d, host, sid)], check=True, capture_output=True)
        dom.create()
    finally:
        conn.close()


def read_pattern(path, size):
    """True if ``path`` holds the pattern (read-only, beside the running QEMU's lock)."""
    proc = subprocess.run(["qemu-io", "-U", "-r", "-f", "qcow2", "-c",
                           f"read -P {PATTERN} {PATTERN_OFFSET} {size}", path],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout


def arrival(d, host):
    """libvirt's job time and downtime (ms) of the last arrival the host logged."""
    found = re.findall(r"arrived: libvirt job time (\d+) ms, downtime (\d+) ms", d.log(host))
    return tuple(int(x) for x in found[-1]) if found else None


def migrate(d, sid, dest, block_migration="auto", timeout=90):
    start = time.monotonic()
    d.client.live_migrate(sid, host=dest, block_migration=block_migration)
    m = d.client.wait_migration(sid, timeout=timeout)
    return m, time.monotonic() - start


def assert_only_on(d, sid, host, running=True):
    where = d.where(sid)
    assert list(where) == [host], f"domain {sid} is on {list(where)}, expected only {host}"
    assert where[host]["persistent"], where
    if running:
        assert where[host]["state"] == libvirt.VIR_DOMAIN_RUNNING, where


def assert_server_on(d, sid, host):
    server = d.client.server(sid)
    assert server["OS-EXT-SRV-ATTR:host"] == host
    assert server["OS-EXT-STS:task_state"] is None
    assert server["status"] == "ACTIVE", server


def no_probes(d):
    return not any(f.startswith(".godwit-shared-probe-")
                   for p in set(d.paths.values()) for f in os.listdir(p))


def test_shared_storage_live_migration_there_and_back(deployment):
    d = deployment(shared=True)
    a, b = d.names
    sid = create_server(d, a)
    assert_only_on(d, sid, a)
    for src, dst in ((a, b), (b, a)):
        m, wall = migrate(d, sid, dst)
        print(f"shared-storage migration {src} -> {dst}: {wall:.2f} s through the API, "
              f"libvirt (job ms, downtime ms) {arrival(d, dst)}")
        assert m["status"] == "completed", m
        assert (m["source_compute"], m["dest_compute"]) == (src, dst)
        assert_server_on(d, sid, dst)
        assert_only_on(d, sid, dst)
        # Shared storage: the one instance directory stays, with its disk.
        assert os.path.exists(disk_path(d, dst, sid))
        assert no_probes(d)
    d.client.delete_server(sid)
    assert d.where(sid) == {}
    assert not os.path.exists(os.path.join(d.paths[a], sid))


def test_block_migration_copies_the_disk(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "4M")
    m, wall = migrate(d, sid, b)
    print(f"block migration {a} -> {b}: {wall:.2f} s through the API, "
          f"libvirt (job ms, downtime ms) {arrival(d, b)}")
    assert m["status"] == "completed", m
    assert_server_on(d, sid, b)
    assert_only_on(d, sid, b)
    assert read_pattern(disk_path(d, b, sid), "4M"), "the pattern did not arrive"
    assert not os.path.exists(os.path.join(d.paths[a], sid)), "source files left behind"
    assert no_probes(d)
    d.client.delete_server(sid)
    assert d.where(sid) == {}
    assert not os.path.exists(os.path.join(d.paths[b], sid))


def _slow_migration(d, sid, dest):
    d.client.live_migrate(sid, host=dest, block_migration=True)
    return d.client.wait_status(sid, "running", timeout=30)


def _assert_rolled_back(d, sid, src, dst):
    assert_server_on(d, sid, src)
    assert_only_on(d, sid, src)
    assert not os.path.exists(os.path.join(d.paths[dst], sid)), "destination files left"
    assert read_pattern(disk_path(d, src, sid), "6M")


def test_abort_of_a_slow_migration(deployment):
    d = deployment(shared=False, libvirt_opts={"live_migration_bandwidth": 1})
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "6M")
    # The dry run first: real checks on both hosts, figures measured by libvirt,
    # nothing written.
    r = d.client.post(f"/servers/{sid}/live-migration-dry-run",
                      {"host": b, "block_migration": True}, expect=200)["dry_run"]
    [host] = r["hosts"]
    est = r["estimate"]
    print(f"dry run: {host}, estimate {est}")
    assert host["accepted"] and host["storage"] == "block", host
    assert est["basis"].startswith("measured by libvirt") and est["bandwidth_mb_s"] == 1, est
    assert isinstance(est["dirty_rate_mb_s"], int), est      # sampled by QEMU
    assert 6 <= est["disk_mb"] < 1024, est                    # the data, not the 1 GiB size
    # At 1 MiB/s at least the disk's data: an upper bound (untouched pages are free).
    assert host["prediction"]["converges"] and host["prediction"]["duration_s"] >= 6, host
    assert d.client.migrations(instance_uuid=sid) == [] and no_probes(d)
    m = _slow_migration(d, sid, b)
    time.sleep(1)
    start = time.monotonic()
    d.client.abort_migration(sid, m["id"])
    m = d.client.wait_migration(sid, timeout=30)
    print(f"abort took {time.monotonic() - start:.2f} s")
    assert m["status"] == "cancelled", m
    _assert_rolled_back(d, sid, a, b)


def test_source_agent_killed_during_a_running_migration(deployment):
    """SIGKILL the source's compute agent while libvirt moves the guest, start it again
    3 s later: the peer-to-peer job belongs to libvirtd and goes on, the new agent
    finds it (or finds it finished) and the move completes, with the record saying
    where the guest runs."""
    d = deployment(shared=False, libvirt_opts={"live_migration_bandwidth": 1})
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "8M")
    m = _slow_migration(d, sid, b)
    time.sleep(1)
    conn = d.lv[a].connect()
    try:
        job = conn.lookupByUUIDString(sid).jobStats()
    finally:
        conn.close()
    assert job.get("type") == libvirt.VIR_DOMAIN_JOB_UNBOUNDED, job
    d.procs.kill(a)
    time.sleep(3)
    # The job outlived the agent: libvirtd still runs it, or has finished it.
    where = d.where(sid)
    assert where.get(a, {}).get("active") or where.get(b, {}).get("active"), where
    d.procs.restart(a)
    m = d.client.wait_migration(sid, timeout=120)
    assert m["status"] == "completed", m
    assert_server_on(d, sid, b)
    assert_only_on(d, sid, b)
    assert read_pattern(disk_path(d, b, sid), "8M")
    assert not os.path.exists(os.path.join(d.paths[a], sid)), "source files left"
    print(f"the new agent on {a}: " + ("found the job running and watched it to its end"
                                       if "found its job still running" in d.log(a)
                                       else "found the job finished"))


def test_completion_timeout_aborts(deployment):
    d = deployment(shared=False, libvirt_opts={
        "live_migration_bandwidth": 1, "live_migration_completion_timeout": 1,
        "live_migration_timeout_action": "abort"})
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "6M")
    start = time.monotonic()
    _slow_migration(d, sid, b)
    m = d.client.wait_migration(sid, timeout=60)
    print(f"completion timeout (abort) ended the migration after {time.monotonic() - start:.2f} s")
    assert m["status"] == "failed", m
    assert "completion timeout" in m["error_message"], m
    _assert_rolled_back(d, sid, a, b)


def test_completion_timeout_forces_completion(deployment):
    d = deployment(shared=False, libvirt_opts={
        "live_migration_bandwidth": 1, "live_migration_completion_timeout": 1,
        "live_migration_timeout_action": "force_complete"})
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "6M")
    start = time.monotonic()
    _slow_migration(d, sid, b)
    m = d.client.wait_migration(sid, timeout=60)
    print(f"forced migration completed after {time.monotonic() - start:.2f} s")
    assert m["status"] == "completed", m
    assert_server_on(d, sid, b)
    # Paused on the source to converge, resumed once on the destination.
    assert_only_on(d, sid, b, running=True)
    assert "Forcing migration to complete (paused): completion timeout" in d.log(a)
    assert read_pattern(disk_path(d, b, sid), "6M")
    assert not os.path.exists(os.path.join(d.paths[a], sid))


def test_rollback_when_the_destination_cannot_prepare(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = create_server(d, a)
    # A real failure: a stale file where the destination's instance directory goes.
    blocker = os.path.join(d.paths[b], sid)
    with open(blocker, "w") as f:
        f.write("in the way\n")
    m, _ = migrate(d, sid, b)
    assert m["status"] == "failed", m   # rolled back, the guest safe on its source
    assert "pre_live_migration" in m["error_message"], m
    assert_server_on(d, sid, a)
    assert_only_on(d, sid, a)
    assert os.path.isfile(blocker)  # not Godwit's: left alone
    assert sorted(os.listdir(d.paths[b])) == [sid]
    os.unlink(blocker)


def test_refused_when_the_destination_hypervisor_is_not_listening(deployment):
    port = free_port()  # nothing listens there
    d = deployment(shared=False, per_host={
        1: {"migration_peer_uri": f"qemu+tcp://127.0.0.1:{port}/system"}})
    a, b = d.names
    sid = create_server(d, a)
    with pytest.raises(APIError) as err:
        d.client.live_migrate(sid, host=b)
    assert err.value.status == 400
    assert "not listening for migrations" in err.value.message
    assert "listen_tcp" in err.value.message
    assert_server_on(d, sid, a)
    assert_only_on(d, sid, a)


def _monitor_tunings(d, sid, mid):
    entries = d.client.get(f"/servers/{sid}/migrations/{mid}/timeline")["timeline"]
    return [e["detail"] for e in entries if e["kind"] == "tuning" and e["name"] == "monitor"]


def test_parallel_connections(deployment):
    """multifd: libvirt takes VIR_MIGRATE_PARALLEL with 2 connections, the guest
    moves, and the timeline says what was used."""
    d = deployment(shared=True, libvirt_opts={"live_migration_parallel_connections": 2})
    a, b = d.names
    sid = create_server(d, a)
    m, wall = migrate(d, sid, b)
    print(f"migration with 2 parallel connections: {wall:.2f} s, libvirt (job ms, "
          f"downtime ms) {arrival(d, b)}")
    assert m["status"] == "completed", m
    assert_server_on(d, sid, b)
    assert_only_on(d, sid, b)
    flags = [int(f, 16) for f in re.findall(rf"Migrating {sid} to \S+ \(flags (0x[0-9a-f]+)\)",
                                            d.log(a))]
    assert flags and flags[-1] & libvirt.VIR_MIGRATE_PARALLEL, flags
    tunings = _monitor_tunings(d, sid, m["id"])
    assert tunings and tunings[0]["parallel_connections"] == 2, tunings


def test_set_speed_during_a_block_migration(deployment):
    """set-speed on the slow block migration (1 MiB/s, about 8 s), through the
    API, the conductor and the source agent to libvirt. What libvirt does with it
    while the disks are copied: the copy under way keeps its speed (the
    migration still takes its 6-8 s), and migrateSetMaxSpeed sometimes returns
    only once the copy ended, so the source waits at most 2 s for it and says
    which it was; the monitor keeps looking meanwhile, and the migration
    completes."""
    d = deployment(shared=False, libvirt_opts={"live_migration_bandwidth": 1,
                                               "live_migration_stall_timeout": 0})
    a, b = d.names
    sid = create_server(d, a)
    write_pattern(d, a, sid, "6M")
    m = _slow_migration(d, sid, b)
    time.sleep(1)
    d.client.post(f"/servers/{sid}/migrations/{m['id']}/action",
                  {"set-speed": {"mib_per_s": 1000}}, expect=202)
    done = d.client.wait_migration(sid, timeout=60)
    assert done["status"] == "completed", done
    assert_only_on(d, sid, b)
    assert read_pattern(disk_path(d, b, sid), "6M")
    entries = d.client.get(f"/servers/{sid}/migrations/{m['id']}/timeline")["timeline"]
    user = [e for e in entries if e["kind"] == "tuning" and e["name"] == "user"]
    print("set-speed during a block migration:", [(e["host"], e["duration_ms"],
                                                   e["detail"]["outcome"]) for e in user],
          "libvirt (job ms, downtime ms)", arrival(d, b))
    assert [e["host"] for e in user] == [a], user
    outcome = user[0]["detail"]["outcome"]
    assert outcome == "ok" or outcome.startswith("asked: the hypervisor had not taken it"), \
        user
    # Answered within the source's wait, not after the disk copy.
    assert user[0]["duration_ms"] < 5000, user
    monitor = [e["detail"] for e in entries if e["kind"] == "tuning" and e["name"] == "monitor"]
    assert any(t.get("user_bandwidth_mib") == 1000 for t in monitor), monitor
