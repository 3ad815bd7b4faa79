"""A host drain survives a real SIGKILL of its conductor: every service an OS
process of its own over RabbitMQ (the test kit's process cloud)."""

import pytest

from godwit.testkit import assert_no_leftovers, assert_only_on, wait_for

pytestmark = pytest.mark.rabbit

# Four seconds per tiny guest, one at a time: a kill lands mid-drain.
OPTIONS = {"fake.migration_bandwidth_mb": 128, "libvirt.live_migration_monitor_interval": 0.1,
           "max_concurrent_live_migrations": 1, "host_drain_interval": 1}


@pytest.fixture(autouse=True)
def _broker(rabbit):
    """The process cloud's broker is the local RabbitMQ (skipped, or in CI
    failed, without it)."""


def _drain(c, drain_id):
    return c.get(f"/os-host-drains/{drain_id}")["host_drain"]


@pytest.mark.godwit_process_cloud(options=OPTIONS)
def test_conductor_sigkilled_mid_drain_the_drain_finishes(godwit_process_cloud):
    cloud = godwit_process_cloud
    c = cloud.client
    sids = [c.create_server(f"vm{i}", host="compute1")["id"] for i in range(3)]
    drain_id = c.post("/os-host-drains", {"host_drain": {"host": "compute1"}},
                      expect=202)["host_drain"]["id"]
    wait_for("one guest moved and the next moving", lambda: [
        g["state"] for g in _drain(c, drain_id)["guests"]][:2] == ["moved", "moving"],
        timeout=60)

    assert cloud.kill("conductor") == -9
    # Without a conductor nothing drives the drain; the API still shows it.
    assert _drain(c, drain_id)["status"] == "running"
    cloud.restart("conductor")

    d = wait_for("the drain's end", lambda: (lambda d: d if d["status"] == "finished"
                                               else None)(_drain(c, drain_id)), timeout=60)
    assert d["summary"] == {"moved": 3}, d["guests"]
    for g in d["guests"]:
        assert g["destination"] == "compute2"
        assert c.server(g["instance_uuid"])["OS-EXT-SRV-ATTR:host"] == "compute2"
        assert_only_on(cloud, g["instance_uuid"], "compute2")
    assert {g["instance_uuid"] for g in d["guests"]} == set(sids)
    assert_no_leftovers(cloud)
    log = cloud.log_path("conductor").read_text()
    assert log.count("Started ConductorManager") == 2
    assert f"Drain {drain_id} of compute1 (running): taken at epoch 2" in log
