"""A suite of 100 live migrations, as a cloud controller's own tests might
have: every tenth fails in pre_live_migration and must be rolled back.
One cloud for the module (godwit_shared_cloud); each test boots its own
server and checks the whole cloud after its move."""

import pytest

from godwit.testkit import (
    assert_final,
    assert_no_leftovers,
    assert_only_on,
    fault,
    wait_migration_status,
)

pytestmark = pytest.mark.godwit_cloud(hosts=3)
HOSTS = ["compute1", "compute2", "compute3"]


@pytest.mark.parametrize("n", range(100))
def test_live_migration(godwit_shared_cloud, n):
    cloud, client = godwit_shared_cloud, godwit_shared_cloud.client
    source, dest = HOSTS[n % 3], HOSTS[(n + 1) % 3]
    sid = client.create_server(f"vm{n}", host=source)["id"]
    broken = n % 10 == 9
    if broken:
        # Only this server's move: the fault names it.
        cloud.host(dest).arm(fault("pre_live_migration", "fail", instance=sid))

    client.live_migrate(sid, host=dest)

    wait_migration_status(client, sid)
    assert_final(client, sid, "failed" if broken else "completed")
    assert_only_on(cloud, sid, source if broken else dest)
    assert_no_leftovers(cloud)
    cloud.host(dest).disarm()
    client.delete_server(sid)
