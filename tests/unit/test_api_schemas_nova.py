"""Request validation equals Nova's, per microversion, through the real WSGI app.

The tables below come from reading Nova's schemas for these actions
(nova/api/openstack/compute/schemas/{migrate_server,servers,server_migrations,
services,migrations,instance_actions,hypervisors,flavors}.py and
nova/api/validation/parameter_types.py): every body or query Nova accepts at a
version must pass validation here (any answer but 400), and every one it
rejects must be refused with 400 in Nova's error body, before anything is
asked of the conductor or a compute host.

The app is :func:`api.router.build_app` over a ComputeAPI on a fresh SQLite
database, with a conductor and compute RPC that only record what they are
asked; requests are ``webob.Request.blank`` calls, no server or thread.
"""

import json

import pytest
import webob

from api import compute_api, router
from godwit import states
from godwit.cmd import common
from godwit.db import api as db_api
from godwit.db import migration

BOOLEAN_SPELLINGS = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                     False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No",
                     "no"]


class Recorder:
    """Stands in for the conductor's RPC API: records every call."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args[1:]))
        return call


class World:
    def __init__(self, tmp_path):
        conf = common.init([], prog="godwit-test",
                           defaults={"state_path": (str(tmp_path), None)})
        url = conf.database.connection
        migration.db_sync(url)
        self.db = db_api.get_database(url)
        self.db.ensure_default_flavors()
        self.services = {h: self.db.service_register(h, states.SERVICE_COMPUTE, "compute", 1)
                         for h in ("compute1", "compute2", "compute1.example_org")}
        for host in ("compute1", "compute2"):
            self.db.compute_node_upsert(host, {"hypervisor_hostname": host,
                                               "hypervisor_type": "fake", "vcpus": 16,
                                               "memory_mb": 32768, "local_gb": 500})
        self.conductor = Recorder()
        self.api = compute_api.ComputeAPI(conf, self.db, self.conductor)
        self.app = router.build_app(self.api)

    def server(self, **values):
        flavor = self.db.flavor_get_by_flavorid("1")
        return self.db.instance_create(dict({
            "display_name": "vm", "user_id": "admin", "project_id": "admin",
            "instance_type_id": flavor["id"], "memory_mb": 512, "vcpus": 1, "root_gb": 1,
            "host": "compute1", "node": "compute1", "vm_state": states.ACTIVE,
            "power_state": 1}, **values))["uuid"]

    def request(self, method, path, version, body=None):
        headers = {"OpenStack-API-Version": f"compute {version}"}
        kwargs = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            kwargs["body"] = json.dumps(body).encode()
        req = webob.Request.blank("/v2.1" + path, method=method, headers=headers, **kwargs)
        resp = req.get_response(self.app)
        return resp.status_code, (resp.json if resp.body else None)

    def recorded(self):
        return list(self.conductor.calls)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("schemas"))


def accepted(world, method, path, version, body=None):
    before = len(world.recorded())
    status, resp = world.request(method, path, version, body)
    assert status != 400, f"{version} {path} {body!r} refused: {resp}"
    return status, resp, world.recorded()[before:]


def refused(world, method, path, version, body=None, fragment=None):
    before = len(world.recorded())
    status, resp = world.request(method, path, version, body)
    assert status == 400, f"{version} {path} {body!r} got {status}: {resp}"
    assert list(resp) == ["badRequest"] and resp["badRequest"]["code"] == 400, resp
    message = resp["badRequest"]["message"]
    if fragment:
        assert fragment in message, message
    assert world.recorded()[before:] == [], "a refused request reached the control plane"
    return message


def action(world, version, body, state=None):
    sid = world.server(**(state or {}))
    return "POST", f"/servers/{sid}/action", version, body


# ------------------------------------------------------------------ os-migrateLive
OLD = {"block_migration": False, "disk_over_commit": False, "host": None}
NEW = {"block_migration": "auto", "host": None}

LIVE_ACCEPTED = [
    # (versions, body of os-migrateLive)
    (["2.1", "2.24"], OLD),
    (["2.1", "2.24"], {"block_migration": "true", "disk_over_commit": "False",
                       "host": "compute2"}),
    (["2.1"], {"block_migration": "yes", "disk_over_commit": "NO",
               "host": "compute-2.example_1"}),
    (["2.25", "2.29", "2.30", "2.67", "2.68", "2.80"], NEW),
    (["2.25", "2.68"], {"block_migration": True, "host": "compute2"}),
    (["2.25", "2.80"], {"block_migration": "False", "host": None}),
    (["2.30", "2.50", "2.67"], {"block_migration": "auto", "host": "compute2",
                                "force": True}),
    (["2.30", "2.67"], {"block_migration": "auto", "host": None, "force": "no"}),
    (["2.30"], {"block_migration": "auto", "host": "compute2", "force": "Off"}),
    (["2.25"], {"block_migration": "auto", "host": "h" * 255}),
]

LIVE_REFUSED = [
    # (versions, body of os-migrateLive, fragment of Nova's message)
    (["2.1", "2.24"], {"block_migration": False, "host": None},
     "'disk_over_commit' is a required property"),
    (["2.1"], {"block_migration": False, "disk_over_commit": False},
     "'host' is a required property"),
    (["2.1", "2.24"], dict(OLD, block_migration="auto"), "block_migration"),
    (["2.1", "2.24", "2.29"], dict(OLD, force=True), "force"),
    (["2.25", "2.30", "2.68", "2.80"], dict(NEW, disk_over_commit=False),
     "disk_over_commit"),
    (["2.25", "2.80"], {"block_migration": "auto"}, "'host' is a required property"),
    (["2.25", "2.80"], {"host": None}, "'block_migration' is a required property"),
    (["2.25", "2.29", "2.68", "2.80"], dict(NEW, force=True), "force"),
    (["2.30"], dict(NEW, force="maybe"), "force"),
    (["2.25", "2.68"], dict(NEW, bogus=1), "bogus"),
    (["2.1"], dict(OLD, bogus=1), "bogus"),
    (["2.25", "2.68"], dict(NEW, host=""), "host"),
    (["2.25", "2.68"], dict(NEW, host="bad/host"), "does not match"),
    (["2.25", "2.68"], dict(NEW, host="spaced host"), "does not match"),
    (["2.25"], dict(NEW, host="h" * 256), "is too long"),
    (["2.25", "2.68"], dict(NEW, host=5), "host"),
    (["2.25"], dict(NEW, block_migration="maybe"), "block_migration"),
    (["2.25"], dict(NEW, block_migration=1), "block_migration"),
    (["2.25"], dict(NEW, block_migration=None), "block_migration"),
    (["2.25"], dict(NEW, block_migration="auto "), "block_migration"),
    (["2.1"], dict(OLD, disk_over_commit="maybe"), "disk_over_commit"),
]


@pytest.mark.parametrize("versions, body", LIVE_ACCEPTED)
def test_live_migrate_bodies_nova_accepts(world, versions, body):
    for version in versions:
        status, _, calls = accepted(world, *action(world, version, {"os-migrateLive": body}))
        assert status == 202
        (name, args), = calls
        assert name == "live_migrate_instance"
        block = body["block_migration"]
        expected_block = "auto" if block == "auto" else str(block).lower() in (
            "true", "1", "on", "yes")
        assert args[1:] == (body["host"], expected_block)


@pytest.mark.parametrize("versions, body, fragment", LIVE_REFUSED)
def test_live_migrate_bodies_nova_rejects(world, versions, body, fragment):
    for version in versions:
        message = refused(world, *action(world, version, {"os-migrateLive": body}),
                          fragment=fragment)
        assert f"API version {version}" in message


@pytest.mark.parametrize("value", BOOLEAN_SPELLINGS)
def test_every_nova_boolean_spelling(world, value):
    accepted(world, *action(world, "2.1", {"os-migrateLive": dict(
        OLD, block_migration=value, disk_over_commit=value)}))
    accepted(world, *action(world, "2.30", {"os-migrateLive": dict(
        NEW, host="compute2", force=value)}))


def test_force_without_host_is_refused_2_30_to_2_67(world):
    for version in ("2.30", "2.67"):
        refused(world, *action(world, version, {"os-migrateLive": dict(NEW, force=True)}),
                fragment="Can't force to a non-provided destination")


def test_nova_error_body_format_for_schema_errors(world):
    status, body = world.request(*action(world, "2.68", {"os-migrateLive": dict(
        NEW, host="bad/host")}))
    assert status == 400
    assert body == {"badRequest": {"code": 400, "message": (
        "Invalid input for field/attribute host. Value: bad/host. 'bad/host' does not "
        "match '^[a-zA-Z0-9-._]*$' (checked at API version 2.68)")}}


@pytest.mark.parametrize("body", [
    {"os-migrateLive": NEW, "migrate": None},  # two actions
    {},
    [],
    "os-migrateLive",
])
def test_malformed_action_bodies(world, body):
    refused(world, *action(world, "2.80", body))


def test_unknown_action(world):
    refused(world, *action(world, "2.80", {"os-bogus": None}),
            fragment="There is no such action: os-bogus")


def test_body_that_is_not_json(world):
    sid = world.server()
    req = webob.Request.blank(f"/v2.1/servers/{sid}/action", method="POST",
                              body=b"{not json", headers={"Content-Type": "application/json"})
    resp = req.get_response(world.app)
    assert resp.status_code == 400
    assert "Malformed request body" in resp.json["badRequest"]["message"]


# -------------------------------------------------------------------------- migrate
@pytest.mark.parametrize("version", ["2.1", "2.55"])
@pytest.mark.parametrize("value", [None, {}, {"host": "compute2"}, {"bogus": 1}, "x", 1])
def test_migrate_body_is_not_validated_before_2_56(world, version, value):
    # Nova registers the migrate schema from 2.56 only; before, any value goes
    # and a host in it is ignored.
    _, _, calls = accepted(world, *action(world, version, {"migrate": value}))
    (name, args), = calls
    assert name == "migrate_server" and args[-1] is None


@pytest.mark.parametrize("value, host", [(None, None), ({}, None), ({"host": None}, None),
                                         ({"host": "compute2"}, "compute2")])
def test_migrate_bodies_nova_accepts_from_2_56(world, value, host):
    for version in ("2.56", "2.80"):
        _, _, calls = accepted(world, *action(world, version, {"migrate": value}))
        (name, args), = calls
        assert name == "migrate_server" and args[-1] == host


@pytest.mark.parametrize("value, fragment", [
    ({"host": ""}, "host"), ({"host": "bad host"}, "does not match"),
    ({"host": "h" * 256}, "too long"), ({"bogus": 1}, "bogus"), ("x", "migrate"),
    ([], "migrate"), (1, "migrate"), ({"host": "compute2", "force": True}, "force"),
])
def test_migrate_bodies_nova_rejects_from_2_56(world, value, fragment):
    for version in ("2.56", "2.80"):
        refused(world, *action(world, version, {"migrate": value}), fragment=fragment)


# --------------------------------------------------------------------------- resize
@pytest.mark.parametrize("args", [
    {"flavorRef": "2"}, {"flavorRef": 2}, {"flavorRef": "http://localhost/flavors/2"},
    {"flavorRef": "2", "OS-DCF:diskConfig": "AUTO"},
    {"flavorRef": "2", "OS-DCF:diskConfig": "MANUAL"},
])
def test_resize_bodies_nova_accepts(world, args):
    for version in ("2.1", "2.80"):
        _, _, calls = accepted(world, *action(world, version, {"resize": args}))
        (name, call_args), = calls
        assert name == "migrate_server" and call_args[1] == "2"


@pytest.mark.parametrize("args, fragment", [
    ({}, "'flavorRef' is a required property"), ({"flavorRef": ""}, "flavorRef"),
    ({"flavorRef": None}, "flavorRef"), ({"flavorRef": 2.5}, "flavorRef"),
    ({"flavorRef": "2", "OS-DCF:diskConfig": "auto"}, "OS-DCF:diskConfig"),
    ({"flavorRef": "2", "bogus": 1}, "bogus"), (None, "resize"), ("2", "resize"),
])
def test_resize_bodies_nova_rejects(world, args, fragment):
    for version in ("2.1", "2.80"):
        refused(world, *action(world, version, {"resize": args}), fragment=fragment)


# ------------------------------------------ confirmResize, revertResize, os-stop/start
@pytest.mark.parametrize("name", ["confirmResize", "revertResize", "os-stop", "os-start"])
@pytest.mark.parametrize("value", [None, {}, {"anything": 1}, "", 0])
def test_null_style_actions_take_any_value(world, name, value):
    # Nova's schema is {name: {}}: the value is not checked.
    state = {"vm_state": states.STOPPED} if name == "os-start" else None
    status, _, _ = accepted(world, *action(world, "2.80", {name: value}, state))
    assert status in (202, 204, 409)


@pytest.mark.parametrize("name", ["confirmResize", "revertResize", "os-stop", "os-start"])
def test_null_style_actions_refuse_extra_keys(world, name):
    refused(world, *action(world, "2.80", {name: None, "bogus": None}))


# ------------------------------------------------------------------- force_complete
def _migrating(world):
    sid = world.server(task_state=states.MIGRATING)
    m = world.db.migration_create({
        "instance_uuid": sid, "migration_type": states.LIVE_MIGRATION,
        "status": states.RUNNING_MIGRATION, "source_compute": "compute1",
        "dest_compute": "compute2", "source_node": "compute1", "dest_node": "compute2",
        "user_id": "admin", "project_id": "admin"})
    return sid, m


def test_force_complete_bodies(world):
    sid, m = _migrating(world)
    path = f"/servers/{sid}/migrations/{m['id']}/action"
    for bad, fragment in (({"force_complete": {}}, "force_complete"),
                          ({"force_complete": 1}, "force_complete"),
                          ({}, "Malformed"), ({"force_complete": None, "x": 1}, "Malformed"),
                          ({"other": None}, "There is no such action: other")):
        refused(world, "POST", path, "2.80", bad, fragment=fragment)
    status, _, calls = accepted(world, "POST", path, "2.22", {"force_complete": None})
    # The intent is recorded on the migration, then its owner is woken.
    assert status == 202 and calls == [("wake", (m["id"],))]
    assert world.db.migration_get(m["id"])["force_complete_requested_at"] is not None


def test_force_complete_needs_2_22(world):
    sid, m = _migrating(world)
    status, body = world.request("POST", f"/servers/{sid}/migrations/{m['id']}/action",
                                 "2.21", {"force_complete": None})
    assert status == 404 and "2.22" in body["itemNotFound"]["message"]


# -------------------------------------------------------------------------- services
SERVICE = {"host": "compute1", "binary": "nova-compute"}


@pytest.mark.parametrize("version, action_name, body", [
    ("2.1", "enable", SERVICE),
    ("2.1", "disable", SERVICE),
    ("2.10", "disable", dict(SERVICE, disabled_reason="maintenance")),
    ("2.1", "disable-log-reason", dict(SERVICE, disabled_reason="maintenance")),
    ("2.11", "force-down", dict(SERVICE, forced_down=True)),
    ("2.52", "force-down", dict(SERVICE, forced_down="no")),
    ("2.52", "enable", dict(SERVICE, binary="godwit-compute")),
    ("2.1", "enable", dict(SERVICE, host="compute1.example_org")),
])
def test_legacy_service_update_bodies_nova_accepts(world, version, action_name, body):
    status, resp, _ = accepted(world, "PUT", f"/os-services/{action_name}", version, body)
    assert status == 200, resp
    assert resp["service"]["host"] == body["host"]


@pytest.mark.parametrize("version, action_name, body, fragment", [
    ("2.1", "enable", {"host": "compute1"}, "'binary' is a required property"),
    ("2.1", "enable", {"binary": "nova-compute"}, "'host' is a required property"),
    ("2.10", "disable", dict(SERVICE, forced_down=True), "forced_down"),
    ("2.1", "disable", dict(SERVICE, disabled_reason=""), "disabled_reason"),
    ("2.1", "disable", dict(SERVICE, disabled_reason="r" * 256), "disabled_reason"),
    ("2.1", "disable", dict(SERVICE, host="bad host"), "does not match"),
    ("2.1", "disable", dict(SERVICE, binary=""), "binary"),
    ("2.1", "disable", dict(SERVICE, status="disabled"), "status"),
    ("2.11", "force-down", dict(SERVICE, forced_down="maybe"), "forced_down"),
    ("2.1", "disable-log-reason", SERVICE, "Missing disabled reason field"),
    ("2.11", "force-down", SERVICE, "Missing forced_down field"),
    ("2.1", "disable", dict(SERVICE, binary="nova-scheduler"), "not supported"),
])
def test_legacy_service_update_bodies_nova_rejects(world, version, action_name, body,
                                                   fragment):
    refused(world, "PUT", f"/os-services/{action_name}", version, body, fragment=fragment)


def test_legacy_service_actions_by_version(world):
    # force-down exists from 2.11; from 2.53 the path holds a uuid, not an action.
    status, body = world.request("PUT", "/os-services/force-down", "2.10", SERVICE)
    assert status == 404 and "Unknown action" in body["itemNotFound"]["message"]
    refused(world, "PUT", "/os-services/disable", "2.53", {"status": "disabled"},
            fragment="Invalid uuid disable")


@pytest.mark.parametrize("body", [
    {"status": "disabled"}, {"status": "disabled", "disabled_reason": "maintenance"},
    {"status": "enabled"}, {"forced_down": True}, {"forced_down": "yes"},
    {"status": "enabled", "forced_down": False},
])
def test_service_update_bodies_nova_accepts_from_2_53(world, body):
    uuid = world.services["compute2"]["uuid"]
    status, resp, _ = accepted(world, "PUT", f"/os-services/{uuid}", "2.53", body)
    assert status == 200 and resp["service"]["id"] == uuid


@pytest.mark.parametrize("body, fragment", [
    ({"status": "off"}, "status"), ({"disabled_reason": ""}, "disabled_reason"),
    ({"host": "compute2"}, "host"), ({"forced_down": "maybe"}, "forced_down"),
    ({"status": "enabled", "disabled_reason": "x"}, "'disabled_reason' with status"),
    ({}, "No updates were requested"),
])
def test_service_update_bodies_nova_rejects_from_2_53(world, body, fragment):
    uuid = world.services["compute2"]["uuid"]
    refused(world, "PUT", f"/os-services/{uuid}", "2.80", body, fragment=fragment)


# --------------------------------------------------------------------- query strings
QUERY_ACCEPTED = [
    # (path, versions)
    ("/os-migrations?bogus=1&limit=x", ["2.1", "2.58"]),  # stripped before 2.59
    ("/os-migrations?limit=2&marker=&status=completed&host=compute1", []),
    ("/os-migrations?limit=0&changes-since=2026-01-01T00:00:00Z", ["2.59", "2.80"]),
    ("/os-migrations?changes-before=2026-01-01T00:00:00", ["2.66", "2.80"]),
    ("/os-migrations?user_id=u&project_id=p", ["2.80"]),
    ("/os-migrations?hidden=0&instance_uuid=x&source_compute=c&migration_type=resize",
     ["2.1", "2.80"]),
    ("/os-services?bogus=1", ["2.1", "2.74"]),
    ("/os-services?binary=nova-compute&host=compute1", ["2.1", "2.80"]),
    ("/servers/detail?bogus=1", ["2.1", "2.74"]),
    ("/servers/detail?name=vm&status=ACTIVE&deleted=False&limit=5&sort_key=display_name"
     "&sort_dir=asc&changes-since=2026-01-01T00:00:00Z", ["2.1", "2.80"]),
    ("/servers?locked=false", ["2.73", "2.80"]),
    ("/servers?tags=a&not-tags=b", ["2.26", "2.80"]),
    ("/servers?changes-before=yesterday&locked=maybe", ["2.1", "2.65"]),  # stripped
    ("/os-hypervisors?bogus=1", ["2.1", "2.52"]),
    ("/os-hypervisors/detail?limit=1&with_servers=yes&hypervisor_hostname_pattern=c",
     ["2.53", "2.80"]),
    ("/flavors/detail?is_public=None&minRam=0&sort_key=name&sort_dir=desc",
     ["2.1", "2.80"]),
    ("/flavors?bogus=1", ["2.1", "2.74"]),
]

QUERY_REFUSED = [
    # (path, versions, fragment)
    ("/os-migrations?limit=-1", ["2.59", "2.80"], "limit"),
    ("/os-migrations?limit=abc", ["2.59"], "limit"),
    ("/os-migrations?limit=1&limit=2", ["2.59"], "limit"),
    ("/os-migrations?changes-since=yesterday", ["2.59", "2.80"], "changes-since"),
    ("/os-migrations?bogus=1", ["2.59", "2.80"], "'bogus' was unexpected"),
    ("/os-migrations?changes-before=2026-01-01T00:00:00Z", ["2.59", "2.65"],
     "'changes-before' was unexpected"),
    ("/os-migrations?user_id=u", ["2.79"], "'user_id' was unexpected"),
    ("/os-services?bogus=1", ["2.75", "2.80"], "'bogus' was unexpected"),
    ("/servers/detail?bogus=1", ["2.75", "2.80"], "'bogus'"),
    ("/servers?changes-since=notatime", ["2.1", "2.80"], "changes-since"),
    ("/servers?sort_key=bogus", ["2.1", "2.80"], "sort_key"),
    ("/servers?name=(unclosed", ["2.1"], "name"),
    ("/servers?limit=-3", ["2.1"], "limit"),
    ("/servers?changes-before=yesterday", ["2.66", "2.80"], "changes-before"),
    ("/os-hypervisors?bogus=1", ["2.53", "2.80"], "'bogus' was unexpected"),
    ("/os-hypervisors?with_servers=maybe", ["2.53"], "with_servers"),
    ("/flavors?bogus=1", ["2.75", "2.80"], "'bogus' was unexpected"),
    ("/flavors?sort_dir=up", ["2.1"], "sort_dir"),
]


@pytest.mark.parametrize("path, versions", QUERY_ACCEPTED)
def test_queries_nova_accepts(world, path, versions):
    for version in versions or ["2.80"]:
        status, resp = world.request("GET", path, version)
        assert status == 200, f"{version} {path}: {status} {resp}"


@pytest.mark.parametrize("path, versions, fragment", QUERY_REFUSED)
def test_queries_nova_rejects(world, path, versions, fragment):
    for version in versions:
        message = refused(world, "GET", path, version, fragment=fragment)
        if "Invalid input for query parameters" not in message:
            assert "Additional properties" in message or "does not match any of the " \
                "regexes" in message, message


def test_server_show_path_actions_with_instance_action_queries(world):
    sid = world.server()
    world.db.action_start(type("C", (), {"request_id": "req-1", "user_id": "admin",
                                         "project_id": "admin"})(), sid, "create")
    path = f"/servers/{sid}/os-instance-actions"
    assert world.request("GET", path + "?limit=x&bogus=1", "2.57")[0] == 200
    refused(world, "GET", path + "?limit=x", "2.58", fragment="limit")
    refused(world, "GET", path + "?bogus=1", "2.58", fragment="'bogus' was unexpected")
    refused(world, "GET", path + "?changes-before=2026-01-01T00:00:00Z", "2.65",
            fragment="'changes-before' was unexpected")
    status, body = world.request("GET", path + "?changes-before=2099-01-01T00:00:00Z&limit=1",
                                 "2.66")
    assert status == 200 and [a["request_id"] for a in body["instanceActions"]] == ["req-1"]


# ------------------------------------------------------------ versions, headers
def test_version_documents_and_headers(world):
    for path, key in (("/", "versions"), ("/v2.1", "version"), ("/v2.1/", "version")):
        resp = webob.Request.blank(path).get_response(world.app)
        assert resp.status_code == 200, path
        doc = resp.json[key][0] if key == "versions" else resp.json[key]
        assert (doc["id"], doc["status"], doc["min_version"], doc["version"]) == \
            ("v2.1", "CURRENT", "2.1", "2.80")
        assert {"rel": "self", "href": "http://localhost/v2.1/"} in doc["links"]
    resp = webob.Request.blank("/v2.1/flavors", headers={
        "X-OpenStack-Nova-API-Version": "2.61"}).get_response(world.app)
    assert resp.headers["OpenStack-API-Version"] == "compute 2.61"
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    assert resp.headers["X-Compute-Request-Id"].startswith("req-")


@pytest.mark.parametrize("header, status", [("compute 2.81", 406), ("compute 3.0", 406),
                                            ("compute 2", 400), ("compute latest", 200)])
def test_microversion_bounds(world, header, status):
    code, body = world.request("GET", "/flavors", header.split()[1])
    assert code == status, body
    if status != 200:
        assert list(body) == ["notAcceptable" if status == 406 else "badRequest"]
