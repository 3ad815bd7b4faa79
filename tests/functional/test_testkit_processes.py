"""The test kit's process cloud: every service a process of its own over RabbitMQ.

What a user's test of real process boundaries leans on: live migrations
between agents in separate processes, a real SIGKILL of an agent in the
middle of a held move and of the conductor between moves, restarts, the
kit's waits and assertions across processes, and a stop that leaves no
process behind - also when the test fails, whose report then shows the
services' logs.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from godwit.testkit import (
    assert_final,
    assert_no_leftovers,
    assert_only_on,
    fault,
    wait_for,
    wait_migration_status,
)

pytestmark = pytest.mark.rabbit

# The conductor gives up on a step a killed agent will never answer after
# host_step_timeout (10 s by default): shorter, so a test of it stays short.
STEP_TIMEOUT = 4


@pytest.fixture(autouse=True)
def _broker(rabbit):
    """The process cloud's broker is the local RabbitMQ (skipped, or in CI
    failed, without it)."""


def pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def host_of(cloud, sid):
    return cloud.client.server(sid)["OS-EXT-SRV-ATTR:host"]


def test_live_migration_between_agents_in_processes_of_their_own(godwit_process_cloud):
    cloud = godwit_process_cloud
    pids = {name: cloud.pid(name) for name in cloud.names}
    assert sorted(pids) == ["api", "compute1", "compute2", "conductor"]
    assert len(set(pids.values()) | {os.getpid()}) == 5, pids
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]

    c.live_migrate(sid, host="compute2")
    assert wait_migration_status(c, sid)["status"] == "completed"
    assert_only_on(cloud, sid, "compute2")
    assert_no_leftovers(cloud)

    # Back again as a cloud controller asks: over RPC, to the conductor's process.
    cloud.conductor_rpc.live_migrate_instance(cloud.admin_context(), sid, "compute1", "auto")
    assert wait_migration_status(c, sid)["status"] == "completed"
    assert_only_on(cloud, sid, "compute1")
    assert_no_leftovers(cloud)
    assert {name: cloud.pid(name) for name in cloud.names} == pids


@pytest.mark.godwit_process_cloud(options={"host_step_timeout": STEP_TIMEOUT})
def test_source_agent_sigkilled_while_its_live_migration_is_held(godwit_process_cloud):
    cloud = godwit_process_cloud
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    source = cloud.host("compute1")
    source.arm(fault("live_migration", "delay", 60, instance=sid))
    c.live_migrate(sid, host="compute2")
    # Held inside the source's live_migration step: the fault says so in its log.
    wait_for("the source held in live_migration", lambda: "Injected fault on compute1: "
             "live_migration delay" in cloud.log_path("compute1").read_text())
    pid = cloud.pid("compute1")

    assert cloud.kill("compute1") == -9
    assert not pid_exists(pid) and not cloud.alive("compute1")
    source.disarm()
    assert cloud.restart("compute1") != pid

    migration = wait_migration_status(c, sid, timeout=60)
    print(f"the move settled {migration['status']}")
    assert migration["status"] in ("completed", "failed"), migration
    assert_final(c, sid)
    where = host_of(cloud, sid)
    # Failed means rolled back: the guest runs on the source, as before.
    assert where == {"completed": "compute2", "failed": "compute1"}[migration["status"]]
    assert c.server(sid)["status"] == "ACTIVE"
    assert_only_on(cloud, sid, where)
    assert_no_leftovers(cloud)


def test_conductor_sigkilled_and_restarted_between_moves(godwit_process_cloud):
    cloud = godwit_process_cloud
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    wait_migration_status(c, sid, "completed")

    assert cloud.kill("conductor") == -9
    # The API is a process of its own: it still answers without a conductor.
    assert c.server(sid)["status"] == "ACTIVE"
    cloud.restart("conductor")

    c.live_migrate(sid, host="compute1")
    assert wait_migration_status(c, sid)["status"] == "completed"
    assert_only_on(cloud, sid, "compute1")
    assert_no_leftovers(cloud)
    log = cloud.log_path("conductor").read_text()
    assert log.count("Started ConductorManager") == 2, "the restart appends to the log"


# A user's test that fails with a process cloud: what it leaves and what it shows.
FAILING_TEST = """
    import json


    def test_fails(godwit_process_cloud):
        with open({pids_file!r}, "w") as f:
            json.dump({{"pids": [godwit_process_cloud.pid(n) for n in godwit_process_cloud.names],
                       "vhost": godwit_process_cloud.transport_url.rsplit("/", 1)[1]}}, f)
        assert False, "the user's assertion"
"""


def test_a_failing_test_leaves_no_process_and_shows_the_logs(tmp_path):
    pids_file = tmp_path / "pids.json"
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(FAILING_TEST.format(pids_file=str(pids_file))))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_user.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "the user's assertion" in run.stdout
    assert "godwit process cloud logs" in run.stdout, run.stdout
    assert "Started ComputeManager" in run.stdout

    seen = json.loads(pids_file.read_text())
    assert len(seen["pids"]) == 4 and all(seen["pids"])
    assert not [pid for pid in seen["pids"] if pid_exists(pid)]
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True,
                            text=True, timeout=60).stdout.split()
    assert seen["vhost"] not in vhosts
