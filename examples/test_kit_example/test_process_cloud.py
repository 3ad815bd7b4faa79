"""A cloud controller's tests across real process boundaries: the conductor,
the API and each fake host's agent run as processes of their own over
RabbitMQ (the godwit_process_cloud fixture), and a test SIGKILLs them.

Needs a RabbitMQ on 127.0.0.1:5672 (guest/guest) where a vhost can be made;
each cloud gets its own and deletes it when it stops."""

import pytest

from godwit.testkit import (
    assert_final,
    assert_no_leftovers,
    assert_only_on,
    fault,
    wait_migration_status,
)

# The conductor gives up a step the killed agent will never answer after
# host_step_timeout seconds (10 by default): shorter, to keep the test short.
pytestmark = pytest.mark.godwit_process_cloud(options={"host_step_timeout": 4})


def test_live_migration_survives_a_sigkilled_source(godwit_process_cloud):
    cloud, client = godwit_process_cloud, godwit_process_cloud.client
    sid = client.create_server("web1", host="compute1")["id"]
    # Hold the move on the source, where it sends the guest over.
    cloud.host("compute1").arm(fault("live_migration", "delay", 60))
    client.live_migrate(sid, host="compute2")
    wait_migration_status(client, sid, "running")

    assert cloud.kill("compute1") == -9     # a real SIGKILL of the agent's process
    cloud.host("compute1").disarm()
    cloud.restart("compute1")               # a new process; returns once it serves

    # However the move ended, it is over and the guest runs in exactly one place.
    migration = wait_migration_status(client, sid, timeout=60)
    assert_final(client, sid)
    host = client.server(sid)["OS-EXT-SRV-ATTR:host"]
    assert host == {"completed": "compute2", "failed": "compute1"}[migration["status"]]
    assert_only_on(cloud, sid, host)
    assert_no_leftovers(cloud)


def test_moves_go_on_after_the_conductor_is_killed(godwit_process_cloud):
    cloud, client = godwit_process_cloud, godwit_process_cloud.client
    sid = client.create_server("web1", host="compute1")["id"]

    cloud.kill("conductor")
    cloud.restart("conductor")
    client.live_migrate(sid, host="compute2")

    assert wait_migration_status(client, sid)["status"] == "completed"
    assert_only_on(cloud, sid, "compute2")
    assert_no_leftovers(cloud)
    # Each service's log, e.g. to attach to a report of your own.
    assert cloud.log_path("conductor").exists()
