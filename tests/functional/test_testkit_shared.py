"""godwit_shared_cloud: one cloud for the module, set by the module's mark."""

import pytest

from godwit.testkit import assert_no_leftovers, assert_only_on, wait_migration_status

pytestmark = pytest.mark.godwit_cloud(hosts=3)
seen = []


@pytest.mark.parametrize("dest", ["compute2", "compute3"])
def test_each_test_moves_a_server_of_its_own(godwit_shared_cloud, dest):
    seen.append(godwit_shared_cloud)
    assert godwit_shared_cloud.host_names == ["compute1", "compute2", "compute3"]
    c = godwit_shared_cloud.client
    sid = c.create_server(f"vm-{dest}", host="compute1")["id"]
    c.live_migrate(sid, host=dest)
    assert wait_migration_status(c, sid)["status"] == "completed"
    assert_only_on(godwit_shared_cloud, sid, dest)
    assert_no_leftovers(godwit_shared_cloud)


def test_the_cloud_was_shared():
    assert len(seen) == 2 and seen[0] is seen[1]
