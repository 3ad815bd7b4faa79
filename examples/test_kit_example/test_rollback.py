"""The example of docs/test-kit.md: boot, live-migrate, break a live migration
in pre_live_migration and check that the rollback left nothing behind."""

import pytest

from godwit.testkit import (
    APIError,
    assert_final,
    assert_no_leftovers,
    assert_only_on,
    assert_unchanged,
    fault,
    wait_migration_status,
)


def test_live_migration_moves_the_guest(godwit_cloud):
    client = godwit_cloud.client
    server = client.create_server("web1", host="compute1")
    assert server["status"] == "ACTIVE"

    client.live_migrate(server["id"], host="compute2")

    assert wait_migration_status(client, server["id"])["status"] == "completed"
    assert_only_on(godwit_cloud, server["id"], "compute2")
    assert_no_leftovers(godwit_cloud)


def test_failed_pre_live_migration_is_rolled_back(godwit_cloud):
    client = godwit_cloud.client
    sid = client.create_server("web1", host="compute1")["id"]
    # The destination fails the step where it prepares for the guest.
    godwit_cloud.host("compute2").arm(fault("pre_live_migration", "fail"))

    client.live_migrate(sid, host="compute2")

    migration = wait_migration_status(client, sid)
    assert migration["status"] == "failed"
    assert_final(client, sid, "failed")
    assert client.server(sid)["status"] == "ACTIVE"
    assert_only_on(godwit_cloud, sid, "compute1")
    assert_no_leftovers(godwit_cloud)
    assert godwit_cloud.host("compute2").domains() == {}


def test_refused_request_changes_nothing(godwit_cloud):
    client = godwit_cloud.client
    sid = client.create_server("web1", host="compute1")["id"]

    with assert_unchanged(godwit_cloud), pytest.raises(APIError) as refused:
        client.live_migrate(sid, host="compute1")   # where it already runs

    assert refused.value.status == 400


def test_a_cloud_controller_speaks_rpc(godwit_cloud):
    sid = godwit_cloud.client.create_server("web1", host="compute1")["id"]

    migration = godwit_cloud.conductor_rpc.live_migrate_instance(
        godwit_cloud.admin_context(), sid, "compute2", "auto")

    assert migration["dest_compute"] == "compute2"
    assert wait_migration_status(godwit_cloud.client, sid)["status"] == "completed"
