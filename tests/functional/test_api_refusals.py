"""Refusals through the real API: 403 for non-admins, 404 for unknown ids,
409 for the wrong state; after each, nothing changed (server host, status and
task_state, migration rows, recorded actions, the fake hosts).
"""

import pytest

from godwit.testing import APIError, Client, fake_host

STUCK = {"fake.migration_bandwidth_mb": 1024, "fake.migration_dirty_rate_mb": 2048,
         "libvirt.live_migration_monitor_interval": 0.05}
UNKNOWN = "00000000-0000-0000-0000-000000000000"


def snapshot(cloud, sid):
    admin = cloud.client
    server = admin.server(sid)
    actions = admin.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
    hosts = {h: not fake_host(cloud.conf.fake.hosts_path, h).is_empty_for(sid)
             for h in cloud.host_names}
    return {"host": server["OS-EXT-SRV-ATTR:host"], "status": server["status"],
            "task_state": server["OS-EXT-STS:task_state"],
            "flavor": server["flavor"]["original_name"],
            "migrations": [(m["id"], m["status"]) for m in
                           admin.migrations(instance_uuid=sid)],
            "actions": [a["request_id"] for a in actions], "on_hosts": hosts}


def refuse(c, status, method, path, body=None, version=None, fragment=None):
    headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
    with pytest.raises(APIError) as err:
        c.request(method, path, json=body, headers=headers)
    assert err.value.status == status, f"{method} {path}: {err.value}"
    if fragment:
        assert fragment in err.value.message, err.value.message
    return err.value.message


@pytest.fixture
def stuck(cloud_factory):
    return cloud_factory(**STUCK)


def test_non_admins_get_403_for_every_move_and_migration_endpoint(stuck):
    cloud, admin = stuck, stuck.client
    bob = Client(cloud.api_url, user="bob", project="p1")
    sid = bob.create_server("bobs")["id"]
    host = admin.server(sid)["OS-EXT-SRV-ATTR:host"]
    other = next(h for h in cloud.host_names if h != host)
    # Start a live migration (as admin) that stays running, so the steering
    # endpoints have something real to refuse.
    admin.live_migrate(sid, host=other)
    m = admin.wait_status(sid, "running")
    before = snapshot(cloud, sid)
    assert before["task_state"] == "migrating"

    action = f"/servers/{sid}/action"
    mig = f"/servers/{sid}/migrations/{m['id']}"
    for method, path, body, rule in [
        ("POST", action, {"os-migrateLive": {"host": None, "block_migration": "auto"}},
         "os-migrate-server:migrate_live"),
        ("POST", action, {"os-migrateLive": {"host": other, "block_migration": "auto"}},
         "os-migrate-server:migrate_live:host"),
        ("POST", action, {"migrate": None}, "os-migrate-server:migrate"),
        ("POST", action, {"migrate": {"host": other}}, "os-migrate-server:migrate:host"),
        ("GET", f"/servers/{sid}/migrations", None, "servers:migrations:index"),
        ("GET", mig, None, "servers:migrations:show"),
        ("DELETE", mig, None, "servers:migrations:delete"),
        ("POST", mig + "/action", {"force_complete": None},
         "servers:migrations:force_complete"),
        ("GET", "/os-migrations", None, "os-migrations:index"),
        ("GET", f"/os-migrations?instance_uuid={sid}", None, "os-migrations:index"),
        ("GET", "/os-services", None, "os-services:list"),
        ("PUT", f"/os-services/{admin.services()[0]['id']}", {"status": "disabled"},
         "os-services:update"),
        ("PUT", "/os-services/disable", {"host": other, "binary": "nova-compute"},
         "os-services:update"),
        ("GET", "/os-hypervisors", None, "os-hypervisors:list"),
        ("GET", "/os-hypervisors/detail", None, "os-hypervisors:list-detail"),
        ("GET", "/servers?all_tenants=1", None, "servers:index:get_all_tenants"),
    ]:
        version = "2.52" if path == "/os-services/disable" else None
        refuse(bob, 403, method, path, body, version=version,
               fragment=f"os_compute_api:{rule} ")
        assert snapshot(cloud, sid) == before, (method, path)
    assert all(s["status"] == "enabled" for s in admin.services())
    # The owner still sees the server, without the admin-only fields.
    server = bob.server(sid)
    assert "OS-EXT-SRV-ATTR:host" not in server and server["status"] == "MIGRATING"
    admin.abort_migration(sid, m["id"])
    assert admin.wait_migration(sid)["status"] == "cancelled"


def test_unknown_ids_are_404_and_change_nothing(cloud):
    admin = cloud.client
    sid = admin.create_server("vm", host="compute1")["id"]
    before = snapshot(cloud, sid)
    for method, path, body, version in [
        ("GET", f"/servers/{UNKNOWN}", None, None),
        ("DELETE", f"/servers/{UNKNOWN}", None, None),
        ("POST", f"/servers/{UNKNOWN}/action",
         {"os-migrateLive": {"host": "compute2", "block_migration": "auto"}}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"migrate": None}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"resize": {"flavorRef": "2"}}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"confirmResize": None}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"revertResize": None}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"os-stop": None}, None),
        ("POST", f"/servers/{UNKNOWN}/action", {"os-start": None}, None),
        ("GET", f"/servers/{UNKNOWN}/migrations", None, None),
        ("GET", f"/servers/{UNKNOWN}/os-instance-actions", None, None),
        ("GET", f"/servers/{sid}/os-instance-actions/req-nosuch", None, None),
        ("GET", f"/servers/{sid}/migrations/999", None, None),
        ("GET", f"/servers/{sid}/migrations/{UNKNOWN}", None, None),
        ("DELETE", f"/servers/{sid}/migrations/999", None, None),
        ("GET", "/flavors/nosuch", None, None),
        ("GET", f"/os-hypervisors/{UNKNOWN}", None, None),
        ("PUT", f"/os-services/{UNKNOWN}", {"status": "disabled"}, None),
        ("PUT", "/os-services/disable", {"host": "nosuch", "binary": "nova-compute"},
         "2.52"),
        ("PUT", "/os-services/bogus-action", {"host": "compute1", "binary": "nova-compute"},
         "2.52"),
        ("GET", "/no-such-resource", None, None),
    ]:
        if path.endswith("/migrations/999") and method == "DELETE":
            continue  # the server is not migrating: that is 409 (below), as in Nova
        refuse(admin, 404, method, path, body, version=version)
        assert snapshot(cloud, sid) == before, (method, path)
    # Endpoints newer than the requested microversion do not exist for it.
    refuse(admin, 404, "GET", f"/servers/{sid}/migrations", version="2.22",
           fragment="2.23")
    refuse(admin, 404, "DELETE", f"/servers/{sid}/migrations/1", version="2.23",
           fragment="2.24")
    assert snapshot(cloud, sid) == before


def test_wrong_state_is_409_and_changes_nothing(stuck):
    cloud, admin = stuck, stuck.client
    sid = admin.create_server("vm", host="compute1")["id"]
    action = f"/servers/{sid}/action"

    before = snapshot(cloud, sid)  # ACTIVE, idle
    for body, fragment in [({"confirmResize": None}, "VERIFY_RESIZE"),
                           ({"revertResize": None}, "VERIFY_RESIZE"),
                           ({"os-start": None}, "start")]:
        refuse(admin, 409, "POST", action, body, fragment=fragment)
        assert snapshot(cloud, sid) == before, body
    # Steering a migration of a server that is not migrating.
    refuse(admin, 409, "DELETE", f"/servers/{sid}/migrations/999")
    refuse(admin, 409, "POST", f"/servers/{sid}/migrations/999/action",
           {"force_complete": None})
    assert snapshot(cloud, sid) == before

    # While it is being live-migrated, no other move, power change or delete.
    admin.live_migrate(sid, host="compute2")
    m = admin.wait_status(sid, "running")
    during = snapshot(cloud, sid)
    for method, path, body in [
        ("POST", action, {"os-migrateLive": {"host": "compute3", "block_migration": "auto"}}),
        ("POST", action, {"migrate": {"host": "compute3"}}),
        ("POST", action, {"resize": {"flavorRef": "2"}}),
        ("POST", action, {"os-stop": None}),
        ("DELETE", f"/servers/{sid}", None),
    ]:
        refuse(admin, 409, method, path, body)
        now = snapshot(cloud, sid)
        assert now["migrations"] == during["migrations"] and now["host"] == "compute1"
        assert now["task_state"] == "migrating" and now["actions"] == during["actions"]
    # The running migration itself can be aborted; the server is back as it was.
    admin.abort_migration(sid, m["id"])
    assert admin.wait_migration(sid)["status"] == "cancelled"
    assert snapshot(cloud, sid)["host"] == "compute1"

    # A stopped server cannot be live-migrated or stopped again.
    admin.action(sid, "os-stop")
    admin.wait_vm(sid, "SHUTOFF")
    stopped = snapshot(cloud, sid)
    for body in ({"os-migrateLive": {"host": "compute2", "block_migration": "auto"}},
                 {"os-stop": None}):
        refuse(admin, 409, "POST", action, body)
        assert snapshot(cloud, sid) == stopped, body
