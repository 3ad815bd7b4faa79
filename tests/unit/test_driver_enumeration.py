"""The drivers' enumeration of what Godwit made on a host (for the reconciler).

The conformance checks here (``assert_enumerates``, ``assert_domains_enumerated``)
are run by every driver: the fakes below, the real VIF, volume and firewall
drivers in tests/host/test_enumeration.py, libvirt in
tests/real/test_libvirt_enumeration.py. Each says: nothing is listed before,
exactly what was made is listed after each (idempotent) make, and exactly
what is left after each (idempotent) undo; nothing else ever is.
"""

import json
import os
import shutil
import uuid

import pytest

from compute import drivers
from compute.fake_host import FakeHost
from godwit import exception, states
from tests.conftest import make_conf

INSPECT_KEYS = {"defined", "active", "incoming", "persistent", "power_state"}


def _key(item):
    return json.dumps(item, sort_keys=True)


def _same(listed, expected):
    return sorted(listed, key=_key) == sorted(expected, key=_key)


def assert_enumerates(listing, steps):
    """``steps``: (make, undo, item) for each thing: ``listing()`` lists exactly
    the items made and not yet undone, in any order, at every point."""
    assert listing() == [], "listed before anything was made"
    made = []
    for make, _, item in steps:
        make()
        make()   # idempotent: listed once
        made.append(item)
        listed = listing()
        assert _same(listed, made), f"after making {item}: listed {listed}, made {made}"
    for _, undo, item in steps:
        undo()
        undo()   # quiet when already gone
        made.remove(item)
        listed = listing()
        assert _same(listed, made), f"after undoing {item}: listed {listed}, left {made}"
    assert listing() == []


def assert_domains_enumerated(driver, running, stopped):
    """``running`` is a defined domain that runs, ``stopped`` a defined one that does
    not, and they are the only domains of Godwit's on the host."""
    listed = {d["instance_uuid"]: d for d in driver.list_domains()}
    assert set(listed) == {running, stopped}, listed
    for instance_uuid, found in listed.items():
        assert set(found) == INSPECT_KEYS | {"instance_uuid"}, found
        assert dict(found, instance_uuid=None) == dict(
            driver.inspect_instance({"uuid": instance_uuid}), instance_uuid=None)
    assert listed[running]["defined"] and listed[running]["active"]
    assert listed[running]["power_state"] == states.RUNNING
    assert not listed[running]["incoming"]
    assert listed[stopped]["defined"] and not listed[stopped]["active"]
    assert listed[stopped]["power_state"] == states.SHUTDOWN

    with pytest.raises(exception.GuestRunningHere):
        driver.remove_domain(running)
    assert {d["instance_uuid"] for d in driver.list_domains()} == {running, stopped}
    assert driver.inspect_instance({"uuid": running})["active"]

    driver.remove_domain(stopped)
    driver.remove_domain(stopped)   # quiet when already gone
    assert [d["instance_uuid"] for d in driver.list_domains()] == [running]
    assert not driver.inspect_instance({"uuid": stopped})["defined"]


# --- the fakes --------------------------------------------------------------------
@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path / "state", **{"fake.hosts_path": str(tmp_path / "hosts")})


def load(kind, conf, host="compute1", *args):
    return drivers.load(kind, "fake", conf, host, *args)


def new_instance():
    return {"uuid": str(uuid.uuid4()), "display_name": "vm", "memory_mb": 64, "vcpus": 1,
            "root_gb": 1, "ephemeral_gb": 0}


def new_vif():
    return {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:01", "network_id": "n1"}


def test_fake_vifs(conf):
    driver, elsewhere = load("vif", conf), load("vif", conf, "compute2")
    first, second = new_instance(), new_instance()
    vifs = [(first, new_vif()), (first, new_vif()), (second, new_vif())]
    elsewhere.plug(first, new_vif())   # another host's: never listed here
    assert_enumerates(driver.list_plugged, [
        (lambda i=i, v=v: driver.plug(i, v), lambda i=i, v=v: driver.unplug(i, v),
         {"vif_id": v["uuid"], "device": v["uuid"], "instance_uuid": i["uuid"]})
        for i, v in vifs])
    assert len(elsewhere.list_plugged()) == 1


def test_fake_volumes(conf):
    driver, elsewhere = load("volume", conf), load("volume", conf, "compute2")
    first, second = new_instance(), new_instance()
    volume_id = str(uuid.uuid4())
    bdms = [(first, {"volume_id": volume_id, "destination_type": "volume"}),
            (first, {"volume_id": str(uuid.uuid4()), "destination_type": "volume"}),
            # The same volume for another instance (a multi-attach) is another connection.
            (second, {"volume_id": volume_id, "destination_type": "volume"})]
    elsewhere.connect_volume(first, bdms[0][1])
    assert_enumerates(driver.list_connections, [
        (lambda i=i, b=b: driver.connect_volume(i, b),
         lambda i=i, b=b: driver.disconnect_volume(i, b),
         {"instance_uuid": i["uuid"], "volume_id": b["volume_id"]}) for i, b in bdms])
    assert elsewhere.list_connections() == [{"instance_uuid": first["uuid"],
                                             "volume_id": volume_id}]


def test_fake_filters(conf):
    driver, elsewhere = load("firewall", conf), load("firewall", conf, "compute2")
    instances = [new_instance(), new_instance()]
    elsewhere.apply_instance_filter(instances[0], [new_vif()])
    nw = [new_vif()]
    assert_enumerates(driver.list_filtered, [
        (lambda i=i: driver.apply_instance_filter(i, nw),
         lambda i=i: driver.unfilter_instance(i, nw), i["uuid"]) for i in instances])
    assert elsewhere.list_filtered() == [instances[0]["uuid"]]


def test_fake_domains(conf, tmp_path):
    instances_path = str(tmp_path / "instances")
    driver = load("virt", conf, "compute1", instances_path)
    elsewhere = load("virt", conf, "compute2", str(tmp_path / "instances2"))
    running, stopped = new_instance(), new_instance()
    assert driver.list_domains() == []
    elsewhere.spawn(new_instance(), [], [])
    for instance in (running, stopped):
        driver.spawn(instance, [], [])
    driver.power_off(stopped)
    assert_domains_enumerated(driver, running["uuid"], stopped["uuid"])
    assert len(elsewhere.list_domains()) == 1

    # An incoming migration's shell is listed, not active, and removable.
    shell = new_instance()
    FakeHost(conf.fake.hosts_path, "compute1").put(
        "domains", shell["uuid"], {"uuid": shell["uuid"], "incoming": True,
                                   "power_state": states.PAUSED_POWER})
    [found] = [d for d in driver.list_domains() if d["instance_uuid"] == shell["uuid"]]
    assert found["defined"] and found["incoming"] and not found["active"]
    driver.remove_domain(shell["uuid"])
    assert [d["instance_uuid"] for d in driver.list_domains()] == [running["uuid"]]


def test_instance_dirs(conf, tmp_path):
    """The base class's listing: instance and set-aside resize directories only."""
    instances_path = tmp_path / "instances"
    driver = load("virt", conf, "compute1", str(instances_path))
    assert driver.list_instance_dirs() == []
    instance, resized = new_instance(), new_instance()
    driver.spawn(instance, [], [])
    (instances_path / (resized["uuid"] + "_resize")).mkdir()
    (instances_path / (resized["uuid"] + "_resize") / "disk").write_text("x")
    # Not an instance's: the image cache, a probe, an operator's files, a file.
    (instances_path / "_base").mkdir()
    (instances_path / "notes").mkdir()
    (instances_path / (str(uuid.uuid4()) + "_old")).mkdir()
    (instances_path / ".godwit-shared-probe-0123").write_text("h")
    (instances_path / str(uuid.uuid4())).write_text("a file, not a directory")
    expected = [{"instance_uuid": instance["uuid"], "kind": "instance",
                 "path": str(instances_path / instance["uuid"])},
                {"instance_uuid": resized["uuid"], "kind": "resize",
                 "path": str(instances_path / (resized["uuid"] + "_resize"))}]
    assert _same(driver.list_instance_dirs(), expected)

    driver.remove_instance_dir(resized["uuid"], "resize")
    assert driver.list_instance_dirs() == expected[:1]
    assert os.path.isdir(instances_path / "_base")
    driver.remove_instance_dir(instance["uuid"], "instance")
    driver.remove_instance_dir(instance["uuid"], "instance")   # quiet when gone
    assert driver.list_instance_dirs() == []
    with pytest.raises(exception.InvalidUUID):
        driver.remove_instance_dir("../escape", "instance")
    assert os.path.isdir(instances_path / "notes")
    shutil.rmtree(instances_path)
    assert driver.list_instance_dirs() == []   # no instances path (yet): nothing
