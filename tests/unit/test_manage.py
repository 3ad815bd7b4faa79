"""``godwit-manage``: schema, flavors and services from the command line."""

import pytest
from alembic.script import ScriptDirectory

from godwit.cmd import manage
from godwit.db import api as db_api
from godwit.db import flavors as db_flavors
from godwit.db import migration as db_migration


@pytest.fixture
def conf_file(tmp_path):
    url = f"sqlite:///{tmp_path}/g.sqlite"
    path = tmp_path / "godwit.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path}/state\n\n"
                    f"[database]\nconnection = {url}\n")
    yield str(path)
    database = db_api._databases.pop(url, None)
    if database is not None:
        database.engine.dispose()


@pytest.fixture
def run(conf_file, capsys):
    """Run godwit-manage; return (exit code, stdout, stderr)."""
    def run(*args):
        code = manage.main(["--config-file", conf_file, *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def synced(run):
    code, _out, _err = run("db", "sync")
    assert code == 0
    return run


def test_db_version_before_sync_says_empty(run):
    code, out, _err = run("db", "version")
    assert code == 0
    assert "empty" in out and "db sync" in out


HEAD = ScriptDirectory.from_config(db_migration.alembic_config("sqlite://")).get_current_head()


def test_db_sync_creates_schema_and_default_flavors(run, tmp_path):
    code, out, _err = run("db", "sync")
    assert code == 0
    assert HEAD in out
    assert (tmp_path / "g.sqlite").exists()

    code, out, _err = run("db", "version")
    assert (code, out.strip()) == (0, HEAD)

    code, out, _err = run("flavor", "list")
    assert code == 0
    for _flavorid, name, *_ in db_flavors.DEFAULT_FLAVORS:
        assert name in out


def test_db_sync_twice_keeps_one_set_of_flavors(synced):
    code, _out, _err = synced("db", "sync")
    assert code == 0
    _code, out, _err = synced("flavor", "list")
    assert out.count("m1.tiny") == 1


def test_flavor_create_then_list(synced):
    code, out, err = synced("flavor", "create", "g1.test", "--ram", "1536", "--vcpus", "3",
                            "--disk", "7", "--id", "g1")
    assert code == 0, err
    assert "g1.test" in out

    _code, out, _err = synced("flavor", "list")
    row = next(line for line in out.splitlines() if "g1.test" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == \
        ["g1", "g1.test", "1536", "3", "7", "0", "0"]


def test_flavor_create_duplicate_is_a_clear_error(synced):
    assert synced("flavor", "create", "dup", "--ram", "256", "--vcpus", "1")[0] == 0
    _code, before, _err = synced("flavor", "list")

    code, out, err = synced("flavor", "create", "dup", "--ram", "512", "--vcpus", "2")
    assert code != 0
    assert err.startswith("error:") and "dup" in err and "already exists" in err
    assert "Traceback" not in err
    assert synced("flavor", "list")[1] == before


@pytest.mark.parametrize("ram", ["0", "-5"])
def test_flavor_create_non_positive_ram_is_refused(synced, ram):
    _code, before, _err = synced("flavor", "list")
    code, out, err = synced("flavor", "create", "bad", "--ram", ram, "--vcpus", "1")
    assert code != 0
    assert "--ram" in err and "positive" in err
    assert "Created" not in out
    assert synced("flavor", "list")[1] == before


def test_flavor_create_negative_disk_is_refused(synced):
    code, _out, err = synced("flavor", "create", "bad", "--ram", "64", "--vcpus", "1",
                             "--disk", "-1")
    assert code != 0 and "--disk" in err
    assert "bad" not in synced("flavor", "list")[1]


def test_service_list_prints_header_when_empty(synced):
    code, out, _err = synced("service", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4  # border, header, border, border
    for title in ("Id", "Binary", "Host", "Status", "State", "Last heartbeat"):
        assert title in lines[1]


def test_service_list_shows_registered_service(synced, tmp_path):
    database = db_api.get_database(f"sqlite:///{tmp_path}/g.sqlite")
    database.service_register("compute7", "godwit-compute", "compute", "1")
    _code, out, _err = synced("service", "list")
    row = next(line for line in out.splitlines() if "compute7" in line)
    assert "godwit-compute" in row and "enabled" in row and "| up " in row
    # Registered without an RPC version (an agent of an older release): auto
    # counts it as the oldest compute version.
    assert "| -  " in row
    from compute import rpcapi as compute_rpcapi
    from conductor import rpcapi as conductor_rpcapi
    no_conductor = f"conductor {conductor_rpcapi.VERSION}"   # none registered: the newest
    assert out.splitlines()[-1] == (f"[upgrade_levels] auto gives: compute "
                                    f"{compute_rpcapi.BASE_VERSION}, {no_conductor}")
    database.service_register("compute7", "godwit-compute", "compute", "1",
                              rpc_version=compute_rpcapi.VERSION)
    _code, out, _err = synced("service", "list")
    assert out.splitlines()[-1] == (f"[upgrade_levels] auto gives: compute "
                                    f"{compute_rpcapi.VERSION}, {no_conductor}")


def test_unknown_command_exits_with_usage_error(run):
    with pytest.raises(SystemExit) as info:
        run("flavor", "destroy")
    assert info.value.code == 2
