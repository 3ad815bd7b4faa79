"""Helpers for functional tests against a running Godwit (ours and users').

:class:`Client` is a small REST client with waits for the states tests care
about; :func:`fake_host` opens what a fake compute host has on disk.
"""

import time

import requests

from compute.fake_host import FakeHost
from godwit import phases, states
from godwit.testkit import waits

FINAL_MIGRATION = tuple(sorted(phases.FINAL))
# Where a cold migration or resize waits for the user (VERIFY_RESIZE), or ended.
SETTLED_COLD = FINAL_MIGRATION + (states.FINISHED,)


class APIError(Exception):
    def __init__(self, response):
        self.status = response.status_code
        try:
            body = response.json()
            self.message = next(iter(body.values()))["message"]
        except (ValueError, StopIteration, KeyError, TypeError, AttributeError):
            self.message = response.text
        super().__init__(f"{self.status}: {self.message}")


class Client:
    def __init__(self, url, user="admin", project="admin", version="2.80"):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"X-Auth-Token": f"{user}:{project}",
                                     "OpenStack-API-Version": f"compute {version}"})

    def request(self, method, path, expect=None, **kwargs):
        r = self.session.request(method, self.url + path, timeout=60, **kwargs)
        if r.status_code >= 400:
            raise APIError(r)
        if expect is not None and r.status_code != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got {r.status_code}")
        return r.json() if r.content else None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, json=body, **kw)

    # --- servers -----------------------------------------------------------
    def create_server(self, name, flavor="1", host=None, wait=True, **extra):
        body = {"server": dict({"name": name, "flavorRef": flavor}, **extra)}
        if host:
            body["server"]["availability_zone"] = f"nova:{host}"
        sid = self.post("/servers", body, expect=202)["server"]["id"]
        return self.wait_server(sid, lambda s: s["status"] != "BUILD") if wait else sid

    def server(self, sid):
        return self.get(f"/servers/{sid}")["server"]

    def wait_server(self, sid, predicate, timeout=30):
        return wait_for(f"server {sid}", lambda: (lambda s: s if predicate(s) else None)(
            self.server(sid)), timeout)

    def delete_server(self, sid, wait=True):
        self.request("DELETE", f"/servers/{sid}", expect=204)
        if wait:
            def gone():
                try:
                    self.server(sid)
                    return None
                except APIError as e:
                    return e.status == 404
            wait_for(f"deletion of {sid}", gone)

    def live_migrate(self, sid, host=None, block_migration="auto"):
        return self.post(f"/servers/{sid}/action",
                         {"os-migrateLive": {"host": host, "block_migration": block_migration}},
                         expect=202)

    def abort_migration(self, sid, migration_id, version=None):
        headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
        return self.request("DELETE", f"/servers/{sid}/migrations/{migration_id}",
                            expect=202, headers=headers)

    def force_complete(self, sid, migration_id):
        return self.post(f"/servers/{sid}/migrations/{migration_id}/action",
                         {"force_complete": None}, expect=202)

    def server_migrations(self, sid):
        return self.get(f"/servers/{sid}/migrations")["migrations"]

    def wait_status(self, sid, status, timeout=30):
        """Wait until the newest migration of ``sid`` is in ``status``."""
        return wait_for(f"migration of {sid} in {status}", lambda: (
            lambda m: m if m and m["status"] == status else None)(
            self.latest_migration(sid)), timeout)

    def action(self, sid, name, args=None, expect=202):
        return self.post(f"/servers/{sid}/action", {name: args}, expect=expect)

    def wait_vm(self, sid, status, timeout=30):
        return self.wait_server(sid, lambda s: s["status"] == status, timeout)

    # --- migrations --------------------------------------------------------
    def migrations(self, **params):
        return self.get("/os-migrations", params=params)["migrations"]

    def latest_migration(self, sid):
        ms = self.migrations(instance_uuid=sid)
        return ms[0] if ms else None

    def wait_migration(self, sid, timeout=30, until=FINAL_MIGRATION):
        """The newest migration of ``sid`` once its status is in ``until``."""
        return wait_for(f"migration of {sid}", lambda: (
            lambda m: m if m and m["status"] in until else None)(
            self.latest_migration(sid)), timeout)

    def events(self, sid, action="live-migration"):
        actions = self.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
        req = next(a["request_id"] for a in actions if a["action"] == action)
        return self.get(f"/servers/{sid}/os-instance-actions/{req}")["instanceAction"]["events"]

    def services(self, binary="godwit-compute"):
        return self.get("/os-services", params={"binary": binary})["services"]


def wait_for(what, fn, timeout=30, interval=None):
    """``fn()``'s first true value. Without ``interval``, the test kit's wait
    (asks at once, then every 1 ms growing to 20 ms); with one, every
    ``interval`` seconds, for callers that sample something costly."""
    if interval is None:
        return waits.wait_for(what, fn, timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def fake_host(hosts_path, host):
    return FakeHost(hosts_path, host)


def assert_only_on(cloud, sid, host):
    """Instance ``sid`` has a domain on fake host ``host`` and nothing on the others.

    ``cloud``: anything with ``host_names`` and ``conf.fake.hosts_path`` (the
    LocalCloud of godwit-all, the tests' cloud fixtures).
    """
    for name in cloud.host_names:
        fh = fake_host(cloud.conf.fake.hosts_path, name)
        if name == host:
            assert sid in fh.snapshot()["domains"], f"{sid} missing on {name}"
        else:
            assert fh.is_empty_for(sid), f"{sid} left on {name}: {fh.snapshot()}"
