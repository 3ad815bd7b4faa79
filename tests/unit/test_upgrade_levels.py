"""[upgrade_levels]: the allowed values, ``auto`` from the services table, and
the services' RPC versions recorded there (on SQLite, PostgreSQL and MariaDB)."""

import datetime

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from compute import manager as compute_manager
from compute import rpcapi as compute_rpcapi
from conductor import manager as conductor_manager
from conductor import rpcapi as conductor_rpcapi
from godwit import states, upgrade
from godwit.cmd import common
from godwit.db import api as db_api
from godwit.db import migration as db_migration
from godwit.timeutils import utcnow
from tests.unit.test_db_api import mariadb_url, sqlite_url  # noqa: F401 - fixtures

COMPUTE = compute_rpcapi.INTERFACE
CONDUCTOR = conductor_rpcapi.INTERFACE


# ------------------------------------------------------------------ one constant per API
def test_each_api_has_one_version_constant_for_its_server_and_its_senders():
    for module, manager in ((compute_rpcapi, compute_manager.ComputeManager),
                            (conductor_rpcapi, conductor_manager.ConductorManager)):
        assert module.VERSION == module.HISTORY[-1] == module.INTERFACE.newest
        assert module.BASE_VERSION == module.HISTORY[0]
        assert manager.target.version is module.VERSION
        assert list(module.HISTORY) == sorted(module.HISTORY, key=upgrade.parse)
        assert all(v in module.HISTORY for v in module.ADDED_IN.values())
        assert not hasattr(module, "VERSION_CAP")
    assert compute_manager.ComputeManager.rpc_version is compute_rpcapi.VERSION
    # A sender's default cap is that same constant.
    assert upgrade.VersionCap.of(None, COMPUTE).value is compute_rpcapi.VERSION


# ------------------------------------------------------------------ allowed values
@pytest.mark.parametrize("value", [None, "auto", *compute_rpcapi.HISTORY])
def test_allowed_levels(value):
    assert upgrade.check_level(COMPUTE, value) == value


@pytest.mark.parametrize("value", ["3.7", "banana", "2", "1.4", "2.01", "", "AUTO", "2.99"])
def test_a_bad_level_is_refused_saying_what_is_allowed(value):
    with pytest.raises(upgrade.InvalidUpgradeLevel) as e:
        upgrade.check_level(COMPUTE, value)
    text = str(e.value)
    assert f"[upgrade_levels] compute = {value!r} is not allowed" in text
    assert "'auto'" in text and f"({', '.join(compute_rpcapi.HISTORY)})" in text
    assert f"unset for the newest ({compute_rpcapi.VERSION})" in text


@pytest.mark.parametrize("group_value", [("compute", "3.7"), ("conductor", "banana")])
def test_a_service_with_a_bad_level_does_not_start(tmp_path, capsys, group_value):
    name, value = group_value
    path = tmp_path / "godwit.conf"
    path.write_text(f"[upgrade_levels]\n{name} = {value}\n")
    with pytest.raises(SystemExit) as e:
        common.init(["--config-file", str(path)], prog="godwit-conductor")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"godwit-conductor: error: [upgrade_levels] {name} = '{value}' "
                          "is not allowed")
    assert "'auto'" in err and ", ".join(
        (COMPUTE if name == "compute" else CONDUCTOR).history) in err


def test_good_levels_start(tmp_path):
    path = tmp_path / "godwit.conf"
    path.write_text("[upgrade_levels]\ncompute = auto\nconductor = 2.0\n")
    conf = common.init(["--config-file", str(path)], prog="godwit-conductor")
    assert (conf.upgrade_levels.compute, conf.upgrade_levels.conductor) == ("auto", "2.0")


# ------------------------------------------------------------------ auto's arithmetic
def test_oldest_counts_unrecorded_as_the_oldest_and_caps_newer_at_the_newest():
    assert upgrade.oldest(COMPUTE, []) == compute_rpcapi.VERSION    # nobody: the newest
    assert upgrade.oldest(COMPUTE, ["2.1", "2.1"]) == "2.1"
    assert upgrade.oldest(COMPUTE, ["2.1", "2.0"]) == "2.0"
    assert upgrade.oldest(COMPUTE, ["2.1", None]) == "2.0"         # an older release
    assert upgrade.oldest(COMPUTE, ["2.9", "2.1"]) == "2.1"        # a newer agent
    assert upgrade.oldest(COMPUTE, ["1.4"]) == "2.0"               # never below served
    assert upgrade.oldest(COMPUTE, ["garbage"]) == "2.0"
    wide = upgrade.Interface("x", "x", ("2.9", "2.10"))
    assert upgrade.oldest(wide, ["2.10", "2.9"]) == "2.9"          # numbers, not strings


def _svc(binary, rpc_version, up=True):
    return {"binary": binary, "rpc_version": rpc_version, "up": up}


def test_auto_counts_the_services_that_are_up_or_every_one_when_none_is():
    def is_up(s):
        return s["up"]
    services = [_svc(states.SERVICE_COMPUTE, "2.1"), _svc(states.SERVICE_COMPUTE, "2.0", False),
                _svc(states.SERVICE_CONDUCTOR, "2.0")]
    assert upgrade.from_services(COMPUTE, services, is_up) == "2.1"
    assert upgrade.from_services(CONDUCTOR, services, is_up) == "2.0"
    down = [_svc(states.SERVICE_COMPUTE, "2.1", False), _svc(states.SERVICE_COMPUTE, "2.0", False)]
    assert upgrade.from_services(COMPUTE, down, is_up) == "2.0"
    assert upgrade.from_services(COMPUTE, [], is_up) == compute_rpcapi.VERSION


class _Client:
    version_cap = None


def test_a_fixed_cap_stays_and_an_auto_cap_follows_its_reads():
    fixed = upgrade.VersionCap(COMPUTE, "2.0", read=lambda: "2.1")
    assert fixed.current() == "2.0" and fixed.refresh() == "2.0"
    fixed.set("2.1")
    assert fixed.current() == "2.0"

    seen = ["2.0"]
    auto = upgrade.VersionCap(COMPUTE, "auto", read=lambda: seen[-1], refresh_after=3600)
    client = _Client()
    auto.follow(client)
    assert client.version_cap == "2.0"
    assert auto.current() == "2.0"
    seen.append("2.1")
    assert auto.current() == "2.0"                 # read less than refresh_after ago
    assert auto.refresh() == "2.1" and client.version_cap == "2.1"
    auto.refresh_after = 0
    seen.append("2.0")                            # an older agent came back
    assert auto.current() == "2.0" and client.version_cap == "2.0"

    def broken():
        raise RuntimeError("database away")
    auto._read = broken
    assert auto.current() == "2.0"                 # the last cap stays


def test_an_agents_auto_cap_starts_at_the_oldest_until_a_conductor_tells():
    cap = upgrade.VersionCap(COMPUTE, "auto")
    assert cap.current() == "2.0"
    cap.set(None)                                  # an older conductor said nothing
    assert cap.current() == "2.0"
    cap.set("2.1")
    assert cap.current() == "2.1"


# ------------------------------------------------------------------ the agent's registration
class _Prepared:
    def __init__(self, calls, version, answer):
        self.calls, self.version, self.answer = calls, version, answer

    def call(self, ctxt, method, **kwargs):
        self.calls.append((self.version, method, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _StubClient:
    version_cap = None

    def __init__(self, answer_22):
        self.calls = []
        self.answer_22 = answer_22

    def prepare(self, version=None, **kwargs):
        return _Prepared(self.calls, version, self.answer_22 if version == "2.2" else {})

    def call(self, ctxt, method, **kwargs):
        return self.prepare().call(ctxt, method, **kwargs)

    def can_send_version(self, version):
        return upgrade.parse(version) <= upgrade.parse(self.version_cap)


def _conductor_api(level, answer_22):
    api = conductor_rpcapi.ConductorClient.__new__(conductor_rpcapi.ConductorClient)
    api.cap = upgrade.VersionCap(CONDUCTOR, level)
    api.client = _StubClient(answer_22)
    api.cap.follow(api.client)
    return api


def _report(api):
    return api.service_report({}, "h1", states.SERVICE_COMPUTE, "compute", "1.0", {},
                              rpc_version="2.1")


def test_an_agent_reports_its_rpc_version_as_2_2_when_allowed():
    api = _conductor_api(None, {"rpc_versions": {"compute": "2.1"}})
    assert _report(api) == {"rpc_versions": {"compute": "2.1"}}
    assert [(v, kw.get("rpc_version")) for v, _, kw in api.client.calls] == [("2.2", "2.1")]


def test_an_agent_pinned_below_2_2_reports_without_it():
    api = _conductor_api("2.1", AssertionError("not sent"))
    _report(api)
    assert [(v, "rpc_version" in kw) for v, _, kw in api.client.calls] == [(None, False)]


def test_an_agent_on_auto_asks_again_as_2_0_when_an_older_conductor_refuses_2_2():
    refusal = messaging.RemoteError("UnsupportedVersion", "Endpoint does not support RPC "
                                    "version 2.2. Attempted method: service_report")
    api = _conductor_api("auto", refusal)
    assert _report(api) == {}
    assert [(v, "rpc_version" in kw) for v, _, kw in api.client.calls] == [
        ("2.2", True), (None, False)]
    other = _conductor_api("auto", messaging.RemoteError("ValueError", "boom"))
    with pytest.raises(messaging.RemoteError):
        _report(other)


# ------------------------------------------------------------------ the services table
def test_services_record_their_rpc_version(any_db):
    svc = any_db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1.0",
                                  rpc_version="2.0")
    assert svc["rpc_version"] == "2.0"
    any_db.service_register("c1", states.SERVICE_CONDUCTOR, "conductor", "1.0",
                            rpc_version="2.2")
    any_db.service_register("h2", states.SERVICE_COMPUTE, "compute", "1.0", rpc_version="2.1")
    read = upgrade.db_reader(any_db, COMPUTE, 60)
    assert read() == "2.0"
    # h1 is upgraded: it registers again with its new version.
    any_db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1.1", rpc_version="2.1")
    assert read() == "2.1"
    assert upgrade.db_reader(any_db, CONDUCTOR, 60)() == "2.2"
    # An agent of a release that does not say: counted as the oldest.
    any_db.service_register("h2", states.SERVICE_COMPUTE, "compute", "0.9")
    assert any_db.service_get_by_host("h2")["rpc_version"] is None
    assert read() == "2.0"
    # ... unless it is down (and others are up).
    any_db.service_update(any_db.service_get_by_host("h2")["id"], {
        "last_seen_up": utcnow() - datetime.timedelta(seconds=600)})
    assert read() == "2.1"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_url(request):
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url",
                                    "mariadb": "mariadb_url"}[request.param])


@pytest.fixture
def any_db(any_url):
    db_migration.db_sync(any_url)
    database = db_api.Database(any_url)
    yield database
    database.engine.dispose()


def test_migration_0008_keeps_existing_services_without_a_version_and_goes_back(any_url):
    db_migration.db_sync(any_url, "0007")
    engine = sa.create_engine(any_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO services (uuid, host, " + ('`binary`' if "mysql" in any_url
                                                        else '"binary"') +
                ", topic, disabled, forced_down, report_count, version, created_at) "
                "VALUES ('u1', 'h1', 'godwit-compute', 'compute', false, false, 0, '0.9', "
                ":now)"), {"now": utcnow()})
        db_migration.db_sync(any_url)
        assert db_migration.db_version(any_url) == "0008"
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT host, version, rpc_version FROM services")).one()
        assert tuple(row) == ("h1", "0.9", None)
        from alembic import command
        command.downgrade(db_migration.alembic_config(any_url), "0007")
        assert db_migration.db_version(any_url) == "0007"
        columns = {c["name"] for c in sa.inspect(engine).get_columns("services")}
        assert "rpc_version" not in columns and "version" in columns
    finally:
        engine.dispose()
