"""Fuzzing the API: thousands of generated requests over every route, at
microversions 2.1, 2.25, 2.53 and 2.80, as admin and as a user.

The requests are what a careless or hostile client sends: paths with odd or
invalid-UTF-8 ids, unknown and repeated query parameters, huge integers,
Unicode digits, regexes that backtrack, bodies of malformed JSON, deep
nesting, wrong types, unknown keys and long strings, mutated from a valid
body of each route. For every answer:

- no 5xx;
- a 4xx has Nova's JSON error body and changed nothing: every table of the
  database is as before and the conductor was asked nothing.

The API is the real WSGI app on waitress (:class:`api.cmd.APIServer`) over a
fresh SQLite database; its conductor only records what it is asked, so the
database changes only by what the API itself writes. Generation is
derandomized, so every run sends the same requests; the counts are printed
(``pytest -s``) and recorded in docs/hardening.md.
"""

import collections
import http.client
import json
import time
import urllib.parse

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import cmd as api_cmd
from api import compute_api
from godwit import states
from godwit.db import migration as db_migration
from godwit.db import models
from tests.conftest import make_conf

VERSIONS = ["2.1", "2.25", "2.53", "2.80"]
# Requests per microversion; with four versions, thousands in all, in well
# under a minute on two shared cores.
EXAMPLES = 800
VOLUME = "5c3b6e4e-0f5a-4f3e-9d7a-2b1c0d9e8f70"
UNKNOWN = "00000000-0000-0000-0000-000000000000"
COUNTS = collections.Counter()


class Recorder:
    """The conductor's RPC API, recording calls and doing nothing."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
        return call


class Target:
    """The API on waitress over its own database, with a server and a live
    migration under way for the routes that need real ids."""

    def __init__(self, tmp_path):
        self.conf = make_conf(tmp_path)
        db_migration.db_sync(self.conf.database.connection)
        from godwit.db import api as db_api
        self.db = db_api.get_database(self.conf.database.connection)
        self.db.ensure_default_flavors()
        for host in ("compute1", "compute2"):
            self.db.service_register(host, states.SERVICE_COMPUTE, "compute", 1)
            self.db.compute_node_upsert(host, {"hypervisor_hostname": host,
                                               "hypervisor_type": "fake", "vcpus": 16,
                                               "memory_mb": 32768, "local_gb": 500})
        flavor = self.db.flavor_get_by_flavorid("1")
        self.sids = []
        for name, project, values in [
                ("idle", "admin", {"vm_state": states.ACTIVE}),
                ("moving", "admin", {"vm_state": states.ACTIVE,
                                     "task_state": states.MIGRATING}),
                ("users", "p1", {"vm_state": states.ACTIVE})]:
            self.sids.append(self.db.instance_create(dict({
                "display_name": name, "user_id": "u", "project_id": project,
                "instance_type_id": flavor["id"], "memory_mb": 512, "vcpus": 1,
                "root_gb": 1, "host": "compute1", "node": "compute1", "power_state": 1},
                **values))["uuid"])
        m = self.db.migration_create({
            "instance_uuid": self.sids[1], "migration_type": states.LIVE_MIGRATION,
            "status": states.RUNNING_MIGRATION, "source_compute": "compute1",
            "dest_compute": "compute2"})
        self.mids = [str(m["id"]), m["uuid"]]
        self.service_ids = [s["uuid"] for s in self.db.service_list()]
        self.conductor = Recorder()
        api = compute_api.ComputeAPI(self.conf, self.db, self.conductor)
        self.server = api_cmd.APIServer(self.conf, None, host="127.0.0.1", port=0, api=api)
        self.server.start()
        self.conn = None

    def stop(self):
        self.server.stop()
        self.db.engine.dispose()

    def snapshot(self):
        with self.db.engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(sa.select(t))), key=repr)
                    for t in models.Base.metadata.sorted_tables}

    def send(self, method, path, headers, body):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port,
                                                       timeout=30)
            try:
                self.conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers.items():
                    self.conn.putheader(k, v)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, resp.getheader("Content-Type", ""), data
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.stop()
    total = sum(v for k, v in COUNTS.items() if k.endswith("xx"))
    by_class = ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items()) if k != "seconds")
    print(f"\nAPI fuzz: {total} requests in {COUNTS['seconds']:.1f} s ({by_class})")


# ------------------------------------------------------------------ strategies
NASTY_TEXT = ["", " ", "²", "٣", "0", "-1", "1.5", "1e9", "9" * 40, "9" * 5000,
              str(2 ** 31), str(2 ** 63), str(2 ** 64), "null", "true", "None", "%", "%FF",
              "^(a+)+$", "(" * 3000 + ")" * 3000, "a{4294967296}", "(?=x)", "\\", "[",
              "x" * 70000, "\u0000", "\ud7ff", "🙂", "../../etc/passwd", "auto", "latest",
              UNKNOWN, VOLUME, "nova-compute", "compute1", "2026-01-31T12:00:00Z",
              "2026-13-45T99:99:99Z", "disabled", "enabled", "desc", "asc", "created_at"]
text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
huge_int = st.one_of(st.integers(), st.integers(min_value=2 ** 31 - 2, max_value=2 ** 64),
                     st.sampled_from([-1, 0, 2 ** 63, 10 ** 100]))
json_scalar = st.one_of(st.none(), st.booleans(), huge_int,
                        st.floats(allow_nan=False), text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=12)


def segment(target, kind):
    """A path segment: a real id of its kind, or something that is not one
    (raw bytes percent-encoded, so invalid UTF-8 too)."""
    real = {"server": target.sids + [UNKNOWN],
            "migration": target.mids + ["9" * 5000, str(2 ** 63), "²", "0"],
            "service": target.service_ids + ["enable", "disable", "disable-log-reason",
                                             "force-down"],
            "hypervisor": ["1", "2"], "request": ["req-" + UNKNOWN],
            "flavor": ["1", "2", "42"]}[kind]
    return st.one_of(st.sampled_from(real).map(urllib.parse.quote),
                     text.map(lambda s: urllib.parse.quote(s, safe="")),
                     st.binary(min_size=1, max_size=12).map(
                         lambda b: urllib.parse.quote_from_bytes(b, safe="")))


def bodies(target):
    server = {"server": {"name": "fuzzed", "flavorRef": "1", "imageRef": "",
                         "block_device_mapping_v2": [
                             {"source_type": "volume", "destination_type": "volume",
                              "uuid": VOLUME, "boot_index": 0,
                              "delete_on_termination": False}]}}
    actions = [{"os-migrateLive": {"host": None, "block_migration": "auto"}},
               {"os-migrateLive": {"block_migration": False, "disk_over_commit": False,
                                   "host": "compute2"}},
               {"migrate": None}, {"migrate": {"host": "compute2"}},
               {"resize": {"flavorRef": "2"}}, {"confirmResize": None},
               {"revertResize": None}, {"os-stop": None}, {"os-start": None},
               {"reboot": {"type": "HARD"}}]
    services = [{"host": "compute1", "binary": "nova-compute"},
                {"host": "compute1", "binary": "nova-compute", "disabled_reason": "x"},
                {"host": "compute1", "binary": "nova-compute", "forced_down": True},
                {"status": "disabled", "disabled_reason": "fuzz"}, {"forced_down": "true"}]
    return {"server": [server], "action": actions, "force": [{"force_complete": None}],
            "service": services}


def mutate(value, draw):
    """``value`` with one thing changed somewhere inside it: a value replaced
    (wrong type, huge, long), an unknown key added, a key removed."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        choice = draw(st.integers(0, 3))
        if choice == 0:
            out[key] = mutate(value[key], draw)
        elif choice == 1:
            out[draw(text)] = draw(json_value)
        elif choice == 2:
            del out[key]
        else:
            out[key] = draw(json_value)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        out = list(value)
        i = draw(st.integers(0, len(out) - 1))
        out[i] = mutate(out[i], draw) if draw(st.booleans()) else draw(json_value)
        if draw(st.booleans()):
            out.append(draw(json_value))
        return out
    return draw(json_value)


def raw_body(draw):
    return draw(st.one_of(
        st.binary(max_size=64),
        # Nesting around the limits that matter (ours, 32; Python's, ~1000).
        st.sampled_from([1, 31, 32, 33, 999, 1000, 5000, 20000]).map(lambda n: b"[" * n),
        st.sampled_from([3, 33, 1200, 3000]).map(
            lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.sampled_from([b"{", b'{"server": ', b"nul", b'{"a": 1}}', b'"\xff\xfe"',
                         b'{"server": {"name": "\\ud800"}}', b"9" * 6000,
                         b'{"a": ' + b"9" * 5000 + b"}", b"[1, 2,]", b"NaN",
                         b'{"a": Infinity}', b"\xef\xbb\xbf{}", b" " * 200000])))


ROUTES = [
    ("GET", "/", [], None), ("GET", "/v2.1", [], None), ("GET", "/v2.1/", [], None),
    ("GET", "/v2.1/servers", [], None), ("GET", "/v2.1/servers/detail", [], None),
    ("POST", "/v2.1/servers", [], "server"),
    ("GET", "/v2.1/servers/{server}", ["server"], None),
    ("DELETE", "/v2.1/servers/{server}", ["server"], None),
    ("POST", "/v2.1/servers/{server}/action", ["server"], "action"),
    ("GET", "/v2.1/servers/{server}/migrations", ["server"], None),
    ("GET", "/v2.1/servers/{server}/migrations/{migration}", ["server", "migration"], None),
    ("DELETE", "/v2.1/servers/{server}/migrations/{migration}", ["server", "migration"],
     None),
    ("POST", "/v2.1/servers/{server}/migrations/{migration}/action",
     ["server", "migration"], "force"),
    ("GET", "/v2.1/servers/{server}/os-instance-actions", ["server"], None),
    ("GET", "/v2.1/servers/{server}/os-instance-actions/{request}", ["server", "request"],
     None),
    ("GET", "/v2.1/os-migrations", [], None), ("GET", "/v2.1/flavors", [], None),
    ("GET", "/v2.1/flavors/detail", [], None),
    ("GET", "/v2.1/flavors/{flavor}", ["flavor"], None),
    ("GET", "/v2.1/os-services", [], None),
    ("PUT", "/v2.1/os-services/{service}", ["service"], "service"),
    ("GET", "/v2.1/os-hypervisors", [], None), ("GET", "/v2.1/os-hypervisors/detail", [], None),
    ("GET", "/v2.1/os-hypervisors/{hypervisor}", ["hypervisor"], None),
    # Not routes: 404 and 405 must be clean too.
    ("PATCH", "/v2.1/servers", [], None), ("GET", "/v2.1/nowhere", [], None),
]
QUERY_KEYS = ["name", "flavor", "limit", "marker", "status", "all_tenants", "host",
              "sort_key", "sort_dir", "changes-since", "changes-before", "minRam",
              "minDisk", "is_public", "instance_uuid", "hidden", "binary", "deleted",
              "with_servers", "hypervisor_hostname_pattern", "user_id", "project_id",
              "locked", "ip", "tags", "node", "uuid", "_private"]


@st.composite
def requests_(draw, target, version):
    method, template, kinds, body_kind = draw(st.sampled_from(ROUTES))
    path = template
    for kind in kinds:
        path = path.replace("{" + kind + "}", draw(segment(target, kind)), 1)
    query = draw(st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), text),
                                    text), max_size=4))
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {"X-Auth-Token": draw(st.sampled_from(["admin:admin", "alice:p1"])),
               "OpenStack-API-Version": "compute " + draw(st.one_of(
                   st.just(version), st.just(version), st.just(version),
                   st.sampled_from(["latest", "2.0", "2.81", "3.1", "x", "2." + "9" * 5000]))),
               "Content-Type": "application/json"}
    body = None
    if method in ("POST", "PUT"):
        kind = draw(st.integers(0, 9))
        valid = bodies(target)[body_kind] if body_kind else [{}]
        if kind in (0, 1):
            body = raw_body(draw)
        elif kind == 2:
            body = None
        elif kind == 3:
            body = json.dumps(draw(json_value)).encode()
        elif kind == 4:
            body = json.dumps(draw(st.sampled_from(valid))).encode()
        else:
            body = json.dumps(mutate(draw(st.sampled_from(valid)), draw)).encode()
        if draw(st.integers(0, 19)) == 0:
            headers["Expect"] = "100-continue"
    return method, path, headers, body


def check(target, request):
    method, path, headers, body = request
    before_db, before_calls = target.snapshot(), len(target.conductor.calls)
    status, ctype, data = target.send(method, path, headers, body)
    COUNTS[f"{status // 100}xx"] += 1
    where = f"{method} {path[:200]} {headers} {(body or b'')[:300]!r}"
    assert status < 500, f"{status} for {where}: {data[:500]!r}"
    if status == 431:
        # waitress refuses a request line and headers over its limit (256 KiB)
        # before the app sees them; its body is text/plain.
        COUNTS["431 from waitress"] += 1
    elif status >= 400:
        assert ctype.startswith("application/json"), f"{status} {ctype} for {where}"
        error = next(iter(json.loads(data).values()))
        assert error["code"] == status and error["message"], (where, data[:300])
    if status >= 400:
        assert target.conductor.calls[before_calls:] == [], f"refused yet asked: {where}"
        assert target.snapshot() == before_db, f"refused with {status} yet changed: {where}"


def known(target, version):
    """The requests that answered 500 at 03bddec (issue 12), sent at every
    version before the generated ones, so the fuzz never depends on drawing
    them by chance."""
    sid, mid = target.sids[1], "/migrations/"
    headers = {"X-Auth-Token": "alice:p1", "OpenStack-API-Version": f"compute {version}",
               "Content-Type": "application/json"}
    bdm = {"source_type": "volume", "destination_type": "volume", "boot_index": 0}

    def create(bdms):
        return json.dumps({"server": {"name": "k", "flavorRef": "1",
                                      "block_device_mapping_v2": bdms}}).encode()
    out = [("DELETE", "/v2.1/servers/%FF", headers, None),
           ("POST", "/v2.1/servers", headers, b"[" * 5000),
           ("POST", "/v2.1/servers", headers, b'{"a":' * 3000 + b"1" + b"}" * 3000),
           ("GET", "/v2.1/servers?name=a%7B4294967296%7D", headers, None),
           ("GET", "/v2.1/servers?flavor=" + "(" * 3000 + ")" * 3000, headers, None),
           ("POST", "/v2.1/servers", headers, create([dict(bdm, uuid={"a": 1})])),
           ("POST", "/v2.1/servers", headers, create(["not an object"])),
           ("POST", "/v2.1/servers", headers, create([dict(bdm, uuid="v" * 1000)])),
           ("GET", "/v2.1/servers?limit=" + "9" * 5000, headers, None),
           ("GET", f"/v2.1/servers/{sid}{mid}{'9' * 5000}", headers, None),
           ("GET", f"/v2.1/servers/{sid}{mid}{2 ** 63 + 1}", headers, None),
           ("GET", "/v2.1/flavors?minRam=%C2%B2", headers, None),
           ("POST", "/v2.1/servers", dict(headers, Expect="100-continue"), b""),
           ("GET", "/v2.1/servers?name=%5E%28a%2B%29%2B%24", headers, None)]
    return out + [(m, p, dict(h, **{"X-Auth-Token": "admin:admin"}), b)
                  for m, p, h, b in out]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_request_answers_5xx_or_changes_anything_when_refused(target, version):
    started = time.monotonic()
    for request in known(target, version):
        check(target, request)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=requests_(target, version))
    def fuzz(request):
        check(target, request)

    try:
        fuzz()
    finally:
        COUNTS["seconds"] += time.monotonic() - started
