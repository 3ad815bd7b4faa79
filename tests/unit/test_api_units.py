"""Microversion negotiation and request-body schemas of the compute API."""

from types import SimpleNamespace

import pytest
import webob

from api import microversion, schemas
from godwit import exception


# -------------------------------------------------------------- microversions
def _version(headers):
    """Parse headers the way the API receives them (webob's case-insensitive dict)."""
    return str(microversion.from_headers(webob.Request.blank("/", headers=headers).headers))


@pytest.mark.parametrize("headers, expected", [
    ({}, "2.1"),
    ({"OpenStack-API-Version": "compute 2.60"}, "2.60"),
    ({"openstack-api-version": "compute 2.25"}, "2.25"),
    ({"OpenStack-API-Version": "volume 3.10, compute 2.53"}, "2.53"),
    ({"OpenStack-API-Version": "COMPUTE 2.30"}, "2.30"),
    ({"X-OpenStack-Nova-API-Version": "2.11"}, "2.11"),
    # the current header wins over the legacy one
    ({"OpenStack-API-Version": "compute 2.70",
      "X-OpenStack-Nova-API-Version": "2.11"}, "2.70"),
    # a current header for another service leaves the legacy one in charge
    ({"OpenStack-API-Version": "volume 3.0",
      "X-OpenStack-Nova-API-Version": "2.11"}, "2.11"),
    ({"OpenStack-API-Version": "compute latest"}, microversion.MAX_VERSION),
    ({"OpenStack-API-Version": "compute LATEST"}, microversion.MAX_VERSION),
    ({"X-OpenStack-Nova-API-Version": "latest"}, microversion.MAX_VERSION),
    ({"OpenStack-API-Version": "compute 2.1"}, microversion.MIN_VERSION),
    ({"OpenStack-API-Version": "compute 2.80"}, "2.80"),
])
def test_from_headers(headers, expected):
    assert _version(headers) == expected


@pytest.mark.parametrize("value", ["2.81", "3.0", "2.0", "1.1", "2.100"])
def test_version_out_of_range_is_not_acceptable(value):
    for headers in ({"OpenStack-API-Version": f"compute {value}"},
                    {"X-OpenStack-Nova-API-Version": value}):
        with pytest.raises(microversion.VersionNotAcceptable) as info:
            _version(headers)
        assert info.value.code == 406
        assert value in str(info.value) and microversion.MAX_VERSION in str(info.value)


@pytest.mark.parametrize("value", ["2", "abc", "2.x", "2.1.1", "two.one", ""])
def test_malformed_version_is_invalid(value):
    with pytest.raises(exception.Invalid) as info:
        microversion.APIVersion(value)
    assert info.value.code == 400


@pytest.mark.parametrize("value", ["2", "2.x", "2.1.1"])
def test_malformed_version_header_is_invalid(value):
    with pytest.raises(exception.Invalid):
        _version({"OpenStack-API-Version": f"compute {value}"})


def test_versions_compare_numerically():
    v = microversion.APIVersion
    assert v("2.10") > v("2.9")
    assert v("2.9") < v("2.10") < v("3.0")
    assert v("2.30").matches("2.30", "2.67")
    assert v("2.67").matches("2.30", "2.67")
    assert not v("2.68").matches("2.30", "2.67")
    assert not v("2.29").matches("2.30")
    assert v("2.1").matches(None, None)


# --------------------------------------------------------------------- schemas
def _req(version):
    return SimpleNamespace(api_version=microversion.APIVersion(version))


def _live(version, **body):
    schemas.validate(_req(version), schemas.MIGRATE_LIVE, {"os-migrateLive": body})


def _refused(version, **body):
    with pytest.raises(exception.Invalid) as info:
        _live(version, **body)
    assert info.value.code == 400
    assert version in str(info.value)
    return str(info.value)


OLD_BODY = {"block_migration": False, "disk_over_commit": False, "host": None}


@pytest.mark.parametrize("version", ["2.1", "2.24"])
def test_old_live_migrate_body_is_accepted(version):
    _live(version, **OLD_BODY)
    _live(version, block_migration="true", disk_over_commit="False", host="compute2")


def test_old_live_migrate_needs_disk_over_commit():
    body = dict(OLD_BODY)
    del body["disk_over_commit"]
    assert "disk_over_commit" in _refused("2.1", **body)


def test_old_live_migrate_refuses_auto():
    _refused("2.1", **dict(OLD_BODY, block_migration="auto"))


@pytest.mark.parametrize("version", ["2.25", "2.29", "2.30", "2.67", "2.68", "2.80"])
def test_auto_block_migration_accepted_from_2_25(version):
    _live(version, block_migration="auto", host=None)
    _live(version, block_migration=True, host="compute2")


@pytest.mark.parametrize("version", ["2.25", "2.30", "2.80"])
def test_disk_over_commit_refused_from_2_25(version):
    assert "disk_over_commit" in _refused(version, **OLD_BODY)


@pytest.mark.parametrize("version", ["2.30", "2.50", "2.67"])
def test_force_accepted_from_2_30_to_2_67(version):
    _live(version, block_migration="auto", host="compute2", force=True)
    _live(version, block_migration="auto", host="compute2", force="no")


@pytest.mark.parametrize("version", ["2.25", "2.29", "2.68", "2.80"])
def test_force_refused_outside_2_30_to_2_67(version):
    assert "force" in _refused(version, block_migration="auto", host="compute2", force=True)


@pytest.mark.parametrize("version", ["2.1", "2.25", "2.68"])
def test_extra_keys_are_refused(version):
    body = OLD_BODY if version == "2.1" else {"block_migration": "auto", "host": None}
    _refused(version, **body, bogus=1)
    with pytest.raises(exception.Invalid):  # beside the action, too
        schemas.validate(_req(version), schemas.MIGRATE_LIVE,
                         {"os-migrateLive": body, "other": {}})


@pytest.mark.parametrize("host", ["", "bad/host", "spaced host", "x" * 256, 5])
@pytest.mark.parametrize("version", ["2.1", "2.68"])
def test_bad_host_is_refused(version, host):
    body = dict(OLD_BODY) if version == "2.1" else {"block_migration": "auto"}
    _refused(version, **dict(body, host=host))


@pytest.mark.parametrize("value", ["maybe", 1, None, "auto "])
def test_bad_block_migration_is_refused(value):
    _refused("2.25", block_migration=value, host=None)


def test_missing_action_is_refused():
    with pytest.raises(exception.Invalid):
        schemas.validate(_req("2.25"), schemas.MIGRATE_LIVE, {})


def test_service_update_body_depends_on_version():
    # Before 2.53 the body names the service (host and binary); from 2.53 the path does.
    with pytest.raises(exception.Invalid, match="'host' is a required property"):
        schemas.validate(_req("2.52"), schemas.SERVICE_UPDATE, {"status": "disabled"})
    schemas.validate(_req("2.52"), schemas.SERVICE_UPDATE,
                     {"host": "compute1", "binary": "nova-compute"})
    schemas.validate(_req("2.53"), schemas.SERVICE_UPDATE, {"status": "disabled"})


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("YES", True), ("on", True), ("1", True),
    ("false", False), ("no", False), ("0", False), ("OFF", False),
])
def test_to_bool(value, expected):
    assert schemas.to_bool(value) is expected


# ------------------------------------------------------- messages that crossed RPC
def test_clean_message_drops_remote_tracebacks():
    from api import wsgi
    tb = ("Traceback (most recent call last):\n\n  File \"x.py\", line 1, in f\n"
          "    raise E\n\ngodwit.exception.MigrationPreCheckError: M\n")
    nested = ("Traceback (most recent call last):\n  File \"y.py\", line 2, in g\n"
              "    call()\n\ngodwit.exception_Remote.MigrationPreCheckError_Remote: M\n"
              + tb)
    text = ("No valid host was found. Refused: compute1: M\n" + nested + "\n"
            "; compute2: M\n" + tb + "\n")
    assert wsgi.clean_message(text) == \
        "No valid host was found. Refused: compute1: M; compute2: M"
    assert wsgi.clean_message("plain message") == "plain message"


@pytest.mark.parametrize("level,cap", [(None, "2.2"), ("2.2", "2.2"), ("2.1", "2.1"),
                                       ("2.0", "2.0")])
def test_the_apis_compute_cap(tmp_path, level, cap):
    """What set-speed/set-downtime are checked against: [upgrade_levels] compute
    (auto is read from the services table: tests/functional/test_live_migration_tuning.py)."""
    from api import compute_api
    from godwit import conf as godwit_conf
    conf = godwit_conf.new_conf()
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("compute", level, group="upgrade_levels")
    assert compute_api.ComputeAPI(conf, None, None).compute_cap().current() == cap
