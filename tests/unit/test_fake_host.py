"""The fake hosts' on-disk records and their fault injection points."""

import json
import threading
import time

import pytest

from compute import fault_injection
from compute.fake_host import KINDS, FakeHost
from godwit import exception

UUID_A = "0b9f8f2e-3c41-4c67-9a7e-2f3c5a1d7e01"
UUID_B = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture
def host(tmp_path):
    return FakeHost(str(tmp_path), "compute1")


# ------------------------------------------------------------------ FakeHost
def test_new_host_has_a_directory_per_kind_and_is_empty(host, tmp_path):
    for kind in KINDS:
        assert (tmp_path / "compute1" / kind).is_dir()
    assert host.snapshot() == {kind: {} for kind in KINDS}


def test_put_get_round_trip_and_overwrite(host):
    host.put("domains", UUID_A, {"state": "running", "memory_mb": 512})
    assert host.get("domains", UUID_A) == {"state": "running", "memory_mb": 512}
    host.put("domains", UUID_A, {"state": "paused"})
    assert host.get("domains", UUID_A) == {"state": "paused"}
    assert host.keys("domains") == [UUID_A]


def test_records_are_plain_json_files_another_process_can_read(host, tmp_path):
    host.put("vifs", "port-1", {"instance_uuid": UUID_A})
    path = tmp_path / "compute1" / "vifs" / "port-1.json"
    assert json.loads(path.read_text()) == {"instance_uuid": UUID_A}
    # a second FakeHost on the same directory sees the same records
    assert FakeHost(str(tmp_path), "compute1").get("vifs", "port-1") == {"instance_uuid": UUID_A}
    # and the atomic write leaves no temporary file behind
    assert [p.name for p in path.parent.iterdir()] == ["port-1.json"]


def test_get_of_missing_record_is_none(host):
    assert host.get("volumes", "nothing") is None


def test_delete_is_idempotent(host):
    host.put("filters", UUID_A, {"rules": []})
    assert host.delete("filters", UUID_A) is True
    assert host.delete("filters", UUID_A) is False
    assert host.get("filters", UUID_A) is None
    assert host.keys("filters") == []


def test_keys_are_sorted_and_per_kind(host):
    for key in ("b", "c", "a"):
        host.put("volumes", key, {})
    host.put("vifs", "z", {})
    assert host.keys("volumes") == ["a", "b", "c"]
    assert host.keys("vifs") == ["z"]


def test_hosts_do_not_share_records(tmp_path):
    one, two = FakeHost(str(tmp_path), "compute1"), FakeHost(str(tmp_path), "compute2")
    one.put("domains", UUID_A, {})
    assert two.get("domains", UUID_A) is None
    assert two.keys("domains") == []


def test_snapshot_lists_everything(host):
    host.put("domains", UUID_A, {"state": "running"})
    host.put("vifs", "port-1", {"instance_uuid": UUID_A})
    host.put("volumes", "vol-1", {"instance_uuid": UUID_B})
    assert host.snapshot() == {
        "domains": {UUID_A: {"state": "running"}},
        "vifs": {"port-1": {"instance_uuid": UUID_A}},
        "volumes": {"vol-1": {"instance_uuid": UUID_B}},
        "filters": {},
    }


def test_is_empty_for_by_key_and_by_instance_uuid(host):
    assert host.is_empty_for(UUID_A)
    host.put("filters", UUID_A, {"rules": []})          # keyed by the instance
    assert not host.is_empty_for(UUID_A)
    assert host.is_empty_for(UUID_B)
    host.put("volumes", "vol-1", {"instance_uuid": UUID_B})  # points at the instance
    assert not host.is_empty_for(UUID_B)
    host.delete("filters", UUID_A)
    assert host.is_empty_for(UUID_A)


@pytest.mark.parametrize("key", ["", "a/b", "../escape", ".hidden", "/abs"])
def test_bad_keys_are_rejected(host, tmp_path, key):
    with pytest.raises(ValueError):
        host.put("domains", key, {})
    with pytest.raises(ValueError):
        host.get("domains", key)
    with pytest.raises(ValueError):
        host.delete("domains", key)
    assert not list(tmp_path.glob("**/*.json"))


def test_unknown_kind_is_rejected(host):
    with pytest.raises(ValueError):
        host.put("disks", UUID_A, {})
    with pytest.raises(ValueError):
        host.get("disks", UUID_A)


# ------------------------------------------------------------ fault_injection
@pytest.mark.parametrize("spec, expected", [
    ("pre_live_migration:fail", ("pre_live_migration", "fail", None, False)),
    ("live_migration:delay:0.5", ("live_migration", "delay", 0.5, False)),
    (" spawn:hang:2 ", ("spawn", "hang", 2.0, False)),
    ("live_migration:fail:0:once", ("live_migration", "fail", 0.0, True)),
    ("spawn:hang::once", ("spawn", "hang", None, True)),
])
def test_parse(spec, expected):
    assert fault_injection.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "spawn", "spawn:explode", "spawn:FAIL", ":"])
def test_parse_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="bad fault"):
        fault_injection.parse(spec)


def test_parse_rejects_non_numeric_seconds():
    with pytest.raises(ValueError):
        fault_injection.parse("spawn:delay:soon")


def test_bad_configured_fault_fails_at_construction(tmp_path):
    with pytest.raises(ValueError):
        fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:explode"])


def test_no_faults_means_check_does_nothing(tmp_path):
    fault_injection.FaultInjector("compute1", str(tmp_path), ["", "  "]).check("spawn")


def test_fail_raises_only_at_its_step(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:fail"])
    inj.check("live_migration")
    with pytest.raises(exception.InjectedFault) as info:
        inj.check("spawn")
    assert "spawn" in str(info.value) and "compute1" in str(info.value)
    with pytest.raises(exception.InjectedFault):  # not limited: fires every time
        inj.check("spawn")


def test_delay_sleeps_then_carries_on(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:delay:0.2"])
    start = time.monotonic()
    inj.check("spawn")
    assert time.monotonic() - start >= 0.2


def test_once_fires_only_once(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:fail:0:once"])
    with pytest.raises(exception.InjectedFault):
        inj.check("spawn")
    inj.check("spawn")
    inj.check("spawn")


def test_faults_json_is_read_at_every_step(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path))
    inj.check("post_live_migration")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(["post_live_migration:fail"]))
    with pytest.raises(exception.InjectedFault):
        inj.check("post_live_migration")
    faults.write_text("[]")
    inj.check("post_live_migration")


def test_unreadable_faults_json_is_ignored(tmp_path):
    (tmp_path / "faults.json").write_text("not json")
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:fail"])
    inj.check("live_migration")
    with pytest.raises(exception.InjectedFault):  # configured faults still apply
        inj.check("spawn")


def test_hang_returns_early_when_stopping(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:hang:30"])
    stopper = threading.Timer(0.2, inj.stopping.set)
    start = time.monotonic()
    stopper.start()
    try:
        with pytest.raises(exception.InjectedFault):
            inj.check("spawn")
    finally:
        stopper.cancel()
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 10


def test_hang_with_timeout_gives_up_and_fails(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path), ["spawn:hang:0.1"])
    start = time.monotonic()
    with pytest.raises(exception.InjectedFault):
        inj.check("spawn")
    assert time.monotonic() - start >= 0.1


def test_once_from_faults_json_fires_once(tmp_path):
    inj = fault_injection.FaultInjector("compute1", str(tmp_path))
    (tmp_path / "faults.json").write_text(json.dumps(["spawn:fail:0:once"]))
    with pytest.raises(exception.InjectedFault):
        inj.check("spawn")
    inj.check("spawn")  # the file still lists it, but it has fired
