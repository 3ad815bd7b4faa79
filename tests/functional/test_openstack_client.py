"""The unmodified OpenStack client (python-openstackclient on openstacksdk)
against an in-process Godwit.

Each test runs the real ``openstack`` CLI from the virtualenv against the
cloud fixture's HTTP API, the way an operator would
(``--os-auth-type none --os-endpoint http://127.0.0.1:<port>/v2.1``), and then
checks the ground truth through :class:`godwit.testing.Client` and the fake
hosts' directories. Without ``--os-compute-api-version`` the client
negotiates the highest microversion both sides know (Godwit's maximum).

Every CLI run costs one to two seconds of imports, so the tests share clouds
and keep the number of runs small.
"""

import json
import os
import subprocess
import sys

import pytest

from godwit.testing import SETTLED_COLD, APIError, Client, assert_only_on

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")
STUCK = {"fake.migration_bandwidth_mb": 1024, "fake.migration_dirty_rate_mb": 2048,
         "libvirt.live_migration_monitor_interval": 0.05}

pytestmark = pytest.mark.skipif(not os.path.exists(OPENSTACK),
                                reason="python-openstackclient is not installed "
                                       "(pip install -e '.[test]')")


class CLIError(Exception):
    def __init__(self, result):
        self.result = result
        super().__init__(f"exit {result.returncode}: {result.stderr.strip()[-2000:]}")


def openstack(cloud, *args, token=None, version=None, timeout=60):
    """Run ``openstack <args>``; JSON-decode the output of ``-f json`` commands."""
    if token is None:
        auth = ["--os-auth-type", "none"]
    else:  # Nova's noauth2 token format, e.g. "bob:project1"
        auth = ["--os-auth-type", "admin_token", "--os-token", token]
    cmd = [OPENSTACK, *auth, "--os-endpoint", cloud.api_url,
           # osc asks the identity proxy's version even when it will not use it.
           "--os-identity-api-version", "3"]
    if version:
        cmd += ["--os-compute-api-version", version]
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise CLIError(result)
    if "-f" in args and args[args.index("-f") + 1] == "json":
        return json.loads(result.stdout)
    return result.stdout


def settled(c, sid, until=("completed", "failed", "error", "cancelled")):
    return c.wait_migration(sid, until=until)


@pytest.fixture
def unshared(cloud_factory, tmp_path):
    """Three hosts with their own instance directories (block migration, copies)."""
    paths = {h: str(tmp_path / f"inst-{h}") for h in ("compute1", "compute2", "compute3")}
    cloud = cloud_factory(host_paths=paths)
    cloud.paths = paths
    return cloud


def test_live_migration_with_and_without_host_and_block(unshared):
    cloud, c = unshared, unshared.client
    sid = c.create_server("vm1", host="compute1")["id"]

    # By name, to a named host: the client looks the server up by name and
    # sends os-migrateLive with host and block_migration "auto".
    openstack(cloud, "server", "migrate", "--live-migration", "--host", "compute2", "vm1")
    m1 = settled(c, sid)
    assert (m1["status"], m1["source_compute"], m1["dest_compute"]) == \
        ("completed", "compute1", "compute2"), m1
    assert c.server(sid)["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert_only_on(cloud, sid, "compute2")

    # Block migration, the scheduler choosing the host.
    disk = os.path.join(cloud.paths["compute2"], sid, "disk")
    with open(disk, "rb") as f:
        content = f.read()
    openstack(cloud, "server", "migrate", "--live-migration", "--block-migration", sid)
    m2 = settled(c, sid)
    assert m2["status"] == "completed" and m2["id"] != m1["id"], m2
    dest = m2["dest_compute"]
    assert dest in ("compute1", "compute3")
    server = c.server(sid)
    assert (server["OS-EXT-SRV-ATTR:host"], server["status"]) == (dest, "ACTIVE")
    assert server["OS-EXT-STS:task_state"] is None
    with open(os.path.join(cloud.paths[dest], sid, "disk"), "rb") as f:
        assert f.read() == content
    assert not os.path.exists(disk)
    assert_only_on(cloud, sid, dest)

    # Without a host and without --block-migration ("auto" from 2.25).
    openstack(cloud, "server", "migrate", "--live-migration", sid)
    m3 = settled(c, sid)
    assert m3["status"] == "completed" and m3["source_compute"] == dest, m3
    assert_only_on(cloud, sid, m3["dest_compute"])

    # The client's view of the same migrations (GET /os-migrations?instance_uuid=).
    listed = openstack(cloud, "server", "migration", "list", "--server", "vm1", "-f", "json")
    assert [(m["Id"], m["UUID"], m["Status"], m["Type"]) for m in listed] == \
        [(m["id"], m["uuid"], "completed", "live-migration") for m in (m3, m2, m1)]
    assert {(m["Source Compute"], m["Dest Compute"]) for m in listed} == \
        {(m["source_compute"], m["dest_compute"]) for m in (m1, m2, m3)}

    # Server events: the actions recorded for the server, and one action's steps.
    actions = openstack(cloud, "server", "event", "list", "vm1", "-f", "json")
    assert [a["Action"] for a in actions] == ["live-migration"] * 3 + ["create"]
    first = actions[2]
    shown = openstack(cloud, "server", "event", "show", "vm1", first["Request ID"], "-f",
                      "json")
    assert shown["action"] == "live-migration"
    events = {e["event"]: e for e in shown["events"]}
    assert events["compute_live_migration"]["result"] == "Success"
    assert events["compute_live_migration"]["host"] == "compute1"
    assert events["compute_pre_live_migration_at_destination"]["host"] == "compute2"


def test_steer_a_running_live_migration(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c = cloud.client
    a = c.create_server("a", host="compute1")["id"]
    b = c.create_server("b", host="compute1")["id"]

    # show (by uuid: osc resolves it through GET /servers/{id}/migrations),
    # then force-complete.
    c.live_migrate(a, host="compute2")
    ma = c.wait_status(a, "running")
    shown = openstack(cloud, "server", "migration", "show", "a", ma["uuid"], "-f", "json")
    assert (shown["ID"], shown["UUID"], shown["Status"], shown["Server UUID"]) == \
        (ma["id"], ma["uuid"], "running", a)
    assert (shown["Source Compute"], shown["Dest Compute"]) == ("compute1", "compute2")
    assert shown["Memory Total Bytes"] > 0
    openstack(cloud, "server", "migration", "force", "complete", "a", str(ma["id"]))
    assert settled(c, a)["status"] == "completed"
    assert_only_on(cloud, a, "compute2")

    # abort: the guest stays where it was and nothing is left at the destination.
    c.live_migrate(b, host="compute3")
    mb = c.wait_status(b, "running")
    openstack(cloud, "server", "migration", "abort", "b", mb["uuid"])
    mb = settled(c, b)
    assert mb["status"] == "cancelled", mb
    server = c.server(b)
    assert (server["OS-EXT-SRV-ATTR:host"], server["status"]) == ("compute1", "ACTIVE")
    assert server["OS-EXT-STS:task_state"] is None
    assert_only_on(cloud, b, "compute1")
    assert {a_["action"] for a_ in c.get(f"/servers/{b}/os-instance-actions")[
        "instanceActions"]} == {"create", "live-migration", "live_migration_abort"}


def test_cold_migration_and_resize_with_confirm_and_revert(unshared):
    cloud, c = unshared, unshared.client
    sid = c.create_server("vm", host="compute1")["id"]

    # Cold migration (the scheduler picks the host), then confirm.
    openstack(cloud, "server", "migrate", "vm")
    m = settled(c, sid, SETTLED_COLD)
    assert (m["status"], m["migration_type"]) == ("finished", "migration"), m
    server = c.wait_vm(sid, "VERIFY_RESIZE")
    dest = server["OS-EXT-SRV-ATTR:host"]
    assert dest != "compute1" and dest == m["dest_compute"]
    openstack(cloud, "server", "resize", "confirm", "vm")
    assert c.wait_migration(sid, until=("confirmed", "error"))["status"] == "confirmed"
    server = c.wait_vm(sid, "ACTIVE")
    assert server["OS-EXT-SRV-ATTR:host"] == dest
    assert_only_on(cloud, sid, dest)

    # Resize to a flavor named by name, then revert.
    openstack(cloud, "server", "resize", "--flavor", "m1.small", "vm")
    m = settled(c, sid, SETTLED_COLD)
    assert (m["status"], m["migration_type"]) == ("finished", "resize"), m
    server = c.wait_vm(sid, "VERIFY_RESIZE")
    assert server["flavor"]["original_name"] == "m1.small"
    openstack(cloud, "server", "resize", "revert", "vm")
    assert c.wait_migration(sid, until=("reverted", "error"))["status"] == "reverted"
    server = c.wait_vm(sid, "ACTIVE")
    assert server["OS-EXT-SRV-ATTR:host"] == dest
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert_only_on(cloud, sid, dest)
    assert [m["status"] for m in c.migrations(instance_uuid=sid)] == \
        ["reverted", "confirmed"]


def test_service_disable_enable_and_hypervisors(cloud):
    c = cloud.client

    def compute2():
        return next(s for s in c.services() if s["host"] == "compute2")

    # 2.53+ (negotiated): osc finds the service with ?binary=nova-compute&host=
    # and sends PUT /os-services/{uuid}.
    openstack(cloud, "compute", "service", "set", "--disable", "--disable-reason",
              "maintenance", "compute2", "nova-compute")
    svc = compute2()
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", "maintenance")
    sid = c.create_server("vm", host="compute1")["id"]
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, host="compute2")
    assert err.value.status == 400 and "disabled (maintenance)" in err.value.message

    # Before 2.53 the legacy PUT /os-services/enable with host and binary.
    openstack(cloud, "compute", "service", "set", "--enable", "compute2", "nova-compute",
              version="2.1")
    svc = compute2()
    assert (svc["status"], svc["disabled_reason"]) == ("enabled", None)

    listed = openstack(cloud, "compute", "service", "list", "--service", "nova-compute",
                       "-f", "json")
    assert sorted((s["Host"], s["Status"], s["State"]) for s in listed) == \
        [(h, "enabled", "up") for h in ("compute1", "compute2", "compute3")]
    hypervisors = openstack(cloud, "hypervisor", "list", "-f", "json")
    assert sorted(h["Hypervisor Hostname"] for h in hypervisors) == \
        ["compute1", "compute2", "compute3"]
    assert {h["State"] for h in hypervisors} == {"up"}


def test_non_admin_cannot_move_and_nothing_changes(cloud):
    owner = Client(cloud.api_url, user="bob", project="p1")
    server = owner.create_server("mine")
    sid = server["id"]
    host = cloud.client.server(sid)["OS-EXT-SRV-ATTR:host"]
    for args in (["--live-migration", "--host", "compute2"], []):
        with pytest.raises(CLIError) as err:
            openstack(cloud, "server", "migrate", *args, sid, token="bob:p1")
        assert "403" in err.value.result.stderr or "Policy does not allow" in \
            err.value.result.stderr, err.value.result.stderr
    server = cloud.client.server(sid)
    assert (server["OS-EXT-SRV-ATTR:host"], server["status"]) == (host, "ACTIVE")
    assert server["OS-EXT-STS:task_state"] is None
    assert cloud.client.migrations(instance_uuid=sid) == []
    assert [a["action"] for a in owner.get(f"/servers/{sid}/os-instance-actions")[
        "instanceActions"]] == ["create"]
    assert_only_on(cloud, sid, host)
