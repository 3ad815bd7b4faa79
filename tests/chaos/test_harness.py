"""The chaos harness itself: a deployment of processes that a test kills and restarts.

One cloud (two fake hosts, one conductor, the API, over RabbitMQ and
PostgreSQL): a live migration each way, an agent SIGKILLed and started
again, a conductor stopped with SIGTERM and started again, the API
restarted, a migration job
that outlives its killed agent, and a stop() that leaves no process behind.
"""

import time

import pytest

from godwit.testing import wait_for
from tests.chaos.harness import pid_gone

pytestmark = [pytest.mark.rabbit, pytest.mark.postgres]

A, B = "chaos-a", "chaos-b"


def migrate(cloud, sid, dest, timeout=60):
    cloud.client.live_migrate(sid, host=dest)
    m = cloud.client.wait_migration(sid, timeout=timeout)
    assert m["status"] == "completed", (m, cloud.db.migration_get(m["id"]))
    assert m["dest_compute"] == dest
    return m


def assert_only_on(cloud, sid, host, other):
    assert sid in cloud.fake(host).snapshot()["domains"]
    assert cloud.fake(other).is_empty_for(sid), cloud.fake(other).snapshot()
    assert cloud.client.server(sid)["OS-EXT-SRV-ATTR:host"] == host


def test_processes_killed_restarted_and_stopped(chaos_cloud):
    started = time.monotonic()
    # A's migrations run as jobs of their own (migration_bandwidth_mb > 0).
    cloud = chaos_cloud(hosts=(A, B), conductors=("cond-a",),
                        host_options={A: {"fake": {"migration_bandwidth_mb": 4096}}})
    print(f"cloud up in {time.monotonic() - started:.1f} s")
    assert all(cloud.alive(n) for n in ("cond-a", A, B, "api"))

    # 1. A live migration A -> B through the REST API.
    sid = cloud.client.create_server("chaos-vm", host=A)["id"]
    m = migrate(cloud, sid, B)
    assert_only_on(cloud, sid, B, A)
    steps = {e["step"]: e for e in cloud.journal(B, migration_id=m["id"])}
    assert steps["pre_live_migration"]["state"] == "done", steps
    assert cloud.db.migration_get(m["id"])["status"] == "completed"

    # 2. A SIGKILLed agent comes back: heartbeats again, and takes a migration.
    assert cloud.kill(A) == -9
    assert not cloud.alive(A) and cloud.returncode(A) == -9
    last = cloud.service(A)["updated_at"]
    cloud.start_service(A, wait=True)
    cloud.wait_up(A, newer_than=last)
    migrate(cloud, sid, A)
    assert_only_on(cloud, sid, A, B)

    # 3. A conductor stopped with SIGTERM exits cleanly; it starts again.
    assert cloud.terminate("cond-a") == 0
    assert not cloud.alive("cond-a")
    cloud.start_service("cond-a", wait=True)
    # The API too; the same client goes on with the restarted one.
    cloud.restart("api", wait=True)

    # A migration job is a process of its own that outlives its agent: hold
    # it just before the switch-over, then kill the agent.
    cloud.arm(A, ["live_migration_switch:delay:120"])
    cloud.client.live_migrate(sid, host=B)
    jobs = []

    def job_running():
        jobs[:] = cloud.job_processes()
        return jobs
    wait_for("the migration job's process", job_running, timeout=30, interval=0.1)
    assert cloud.client.latest_migration(sid)["status"] == "running"
    cloud.kill(A)
    time.sleep(0.5)
    assert set(jobs) <= set(cloud.job_processes()), "the job died with its agent"

    # 4. stop() leaves nothing behind: no service, no job; twice is fine.
    cloud.stop()
    assert not any(cloud.alive(n) for n in cloud.names)
    assert cloud.job_processes() == []
    assert all(pid_gone(pid) for pid in jobs)
    cloud.stop()
    print(f"test done in {time.monotonic() - started:.1f} s")


# restart_broker is exercised by tests/chaos/test_chaos_more.py (30 moves in flight).
