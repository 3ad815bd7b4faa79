"""``[api] auth_strategy = keystone`` and policy files, without a real Keystone.

A small fake Keystone (the v3 endpoints keystonemiddleware's auth_token and
keystoneauth use: version discovery, POST /v3/auth/tokens to log in and
GET /v3/auth/tokens to validate) runs on 127.0.0.1; the API validates every
token against it exactly as it would against Keystone, through
``[keystone_authtoken]`` options in a configuration file.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest
import requests
from keystoneauth1 import fixture as ks_fixture

from godwit import rpc
from godwit.cmd import common
from godwit.cmd.all import IN_PROCESS_TRANSPORT, LocalCloud
from godwit.testing import Client, fake_host

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")
MIGRATE_LIVE = "os_compute_api:os-migrate-server:migrate_live"

# name -> (password, project, roles); Keystone's implied roles are spelled out.
USERS = {
    "godwit": ("service-secret", "service", ["service", "admin", "member", "reader"]),
    "admin": ("admin-secret", "admin", ["admin", "member", "reader"]),
    "alice": ("alice-secret", "p1", ["member", "reader"]),
}


class FakeKeystone:
    """Keystone's v3 token API, just enough for auth_token and keystoneauth."""

    def __init__(self):
        self.tokens = {}
        self.compute_url = None
        keystone = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                if path in ("", "/v3"):
                    doc = keystone.version_doc()
                    return self._send(200, {"version": doc} if path else
                                      {"versions": {"values": [doc]}})
                if path == "/v3/auth/tokens":
                    if self.headers.get("X-Auth-Token") not in keystone.tokens:
                        return self._send(401, {"error": {"code": 401,
                                                          "title": "Unauthorized"}})
                    token = keystone.tokens.get(self.headers.get("X-Subject-Token"))
                    if token is None:
                        return self._send(404, {"error": {"code": 404,
                                                          "title": "Not Found"}})
                    return self._send(200, token,
                                      [("X-Subject-Token", self.headers["X-Subject-Token"])])
                self._send(404, {"error": {"code": 404, "title": "Not Found"}})

            def do_POST(self):
                if self.path.split("?")[0].rstrip("/") != "/v3/auth/tokens":
                    return self._send(404, {"error": {"code": 404}})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["auth"]["identity"]["password"]["user"]
                known = USERS.get(user.get("name"))
                if known is None or known[0] != user.get("password"):
                    return self._send(401, {"error": {"code": 401, "title": "Unauthorized"}})
                token_id = keystone.issue(user["name"])
                self._send(201, keystone.tokens[token_id], [("X-Subject-Token", token_id)])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def version_doc(self):
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": self.url + "/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def issue(self, name):
        """A valid token for user ``name`` (as if it had logged in)."""
        _, project, roles = USERS[name]
        token = ks_fixture.V3Token(user_id=f"{name}-id", user_name=name,
                                   user_domain_id="default", user_domain_name="Default",
                                   project_id=project, project_name=project,
                                   project_domain_id="default",
                                   project_domain_name="Default")
        for role in roles:
            token.add_role(name=role)
        identity = token.add_service("identity", name="keystone")
        identity.add_standard_endpoints(public=self.url + "/v3", internal=self.url + "/v3",
                                        admin=self.url + "/v3", region="RegionOne")
        if self.compute_url:
            compute = token.add_service("compute", name="godwit")
            compute.add_standard_endpoints(public=self.compute_url,
                                           internal=self.compute_url, region="RegionOne")
        token_id = uuid.uuid4().hex
        self.tokens[token_id] = dict(token)
        return token_id

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keystone():
    ks = FakeKeystone().start()
    yield ks
    ks.stop()


@pytest.fixture
def keystone_cloud(keystone, tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("{}\n")
    conf_file = tmp_path / "godwit.conf"
    conf_file.write_text(f"""[api]
auth_strategy = keystone
[oslo_policy]
policy_file = {policy_file}
[keystone_authtoken]
www_authenticate_uri = {keystone.url}/v3
auth_type = password
auth_url = {keystone.url}/v3
username = godwit
password = {USERS["godwit"][0]}
project_name = service
user_domain_name = Default
project_domain_name = Default
""")
    defaults = {"state_path": (str(tmp_path / "state"), None), "report_interval": (1, None),
                "transport_url": (IN_PROCESS_TRANSPORT, None),
                "service_down_time": (3, None), "rpc_response_timeout": (15, None)}
    conf = common.init(["--config-file", str(conf_file)], prog="godwit-test",
                       defaults=defaults)
    cloud = LocalCloud(conf, hosts=("compute1", "compute2"), api_port=0).start()
    cloud.policy_file = policy_file
    keystone.compute_url = cloud.api_url
    yield cloud
    cloud.stop()
    rpc.cleanup()


def client(cloud, token):
    c = Client(cloud.api_url)
    if token is None:
        del c.session.headers["X-Auth-Token"]
    else:
        c.session.headers["X-Auth-Token"] = token
    return c


def live_migrate(c, sid, host=None):
    return c.session.post(f"{c.url}/servers/{sid}/action",
                          json={"os-migrateLive": {"host": host, "block_migration": "auto"}},
                          timeout=60)


def where(cloud, sid):
    admin = cloud.admin
    server = admin.server(sid)
    return server["OS-EXT-SRV-ATTR:host"], server["OS-EXT-STS:task_state"], \
        len(admin.migrations(instance_uuid=sid))


def test_keystone_tokens_admin_member_bad_and_none(keystone, keystone_cloud):
    cloud = keystone_cloud
    admin = cloud.admin = client(cloud, keystone.issue("admin"))
    alice = client(cloud, keystone.issue("alice"))

    # Version discovery needs no token, as in Nova; everything else does.
    for path in ("/", "/v2.1"):
        r = requests.get(cloud.api_url.rsplit("/v2.1", 1)[0] + path, timeout=10)
        assert r.status_code == 200, r.text
    for c in (client(cloud, None), client(cloud, "not-a-token")):
        r = c.session.get(f"{c.url}/servers", timeout=10)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Keystone uri=")

    sid = alice.create_server("alices")["id"]
    server = alice.server(sid)
    assert (server["tenant_id"], server["user_id"]) == ("p1", "alice-id")
    assert "OS-EXT-SRV-ATTR:host" not in server  # not for members
    before = where(cloud, sid)

    # A member owns the server but may not move it.
    for host in (None, "compute2" if before[0] == "compute1" else "compute1"):
        r = live_migrate(alice, sid, host)
        assert r.status_code == 403, r.text
        assert MIGRATE_LIVE in r.json()["forbidden"]["message"]
    assert where(cloud, sid) == before
    # Nor list migrations or services.
    for path in ("/os-migrations", f"/servers/{sid}/migrations", "/os-services"):
        assert alice.session.get(alice.url + path, timeout=10).status_code == 403

    # The admin token may.
    r = live_migrate(admin, sid)
    assert r.status_code == 202, r.text
    m = admin.wait_migration(sid)
    assert m["status"] == "completed", m
    assert (m["user_id"], m["project_id"]) == ("admin-id", "admin")
    assert admin.server(sid)["OS-EXT-SRV-ATTR:host"] == m["dest_compute"] != before[0]


def test_policy_file_lets_members_live_migrate(keystone, keystone_cloud):
    cloud = keystone_cloud
    cloud.admin = client(cloud, keystone.issue("admin"))
    alice = client(cloud, keystone.issue("alice"))
    sid = alice.create_server("alices")["id"]
    host, _, _ = where(cloud, sid)
    other = "compute2" if host == "compute1" else "compute1"
    assert live_migrate(alice, sid).status_code == 403

    # The operator edits the policy file; oslo.policy reloads it on change.
    cloud.policy_file.write_text(f'"{MIGRATE_LIVE}": "role:member"\n')
    r = live_migrate(alice, sid)
    assert r.status_code == 202, r.text
    m = cloud.admin.wait_migration(sid)
    assert (m["status"], m["dest_compute"]) == ("completed", other), m
    only = fake_host(cloud.conf.fake.hosts_path, other).snapshot()["domains"]
    assert sid in only
    # As in Nova, the override of migrate_live also governs migrate_live:host
    # (its deprecated rule) until that one is overridden too.
    r = live_migrate(alice, sid, host)
    assert r.status_code == 202, r.text
    assert cloud.admin.wait_migration(sid)["dest_compute"] == host
    cloud.policy_file.write_text(f'"{MIGRATE_LIVE}": "role:member"\n'
                                 f'"{MIGRATE_LIVE}:host": "role:admin"\n')
    r = live_migrate(alice, sid, other)
    assert r.status_code == 403, r.text
    assert where(cloud, sid) == (host, None, 2)


@pytest.mark.skipif(not os.path.exists(OPENSTACK), reason="python-openstackclient missing")
def test_stock_client_logs_in_through_keystone(keystone, keystone_cloud):
    cloud = keystone_cloud
    cloud.admin = client(cloud, keystone.issue("admin"))
    sid = cloud.admin.create_server("vm", host="compute1")["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=keystone.url + "/v3", OS_USERNAME="admin",
               OS_PASSWORD=USERS["admin"][0], OS_PROJECT_NAME="admin",
               OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
               OS_IDENTITY_API_VERSION="3", OS_REGION_NAME="RegionOne")
    result = subprocess.run([OPENSTACK, "server", "migrate", "--live-migration", "--host",
                             "compute2", "vm"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0, result.stderr
    m = cloud.admin.wait_migration(sid)
    assert (m["status"], m["dest_compute"]) == ("completed", "compute2"), m
    assert m["user_id"] == "admin-id"
