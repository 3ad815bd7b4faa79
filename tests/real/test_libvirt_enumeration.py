"""LibvirtDriver.list_domains / remove_domain against a real libvirtd.

The driver's conformance check is that of tests/unit/test_driver_enumeration.py
(``assert_domains_enumerated``): a guest the driver spawned and that runs is
listed as active and is not removed; one spawned then powered off is listed as
not active and is removed. Domains that are not Godwit's - another name, a
Nova-style ``instance-0000000a``, Godwit's metadata over a different uuid -
are neither listed nor removed.
"""

import uuid

import libvirt
import pytest

from compute.virt.libvirt import config
from compute.virt.libvirt.driver import LibvirtDriver
from godwit import conf as godwit_conf
from godwit import exception, states
from tests.unit.test_driver_enumeration import assert_domains_enumerated


@pytest.fixture
def lv(libvirt_hosts):
    host = libvirt_hosts[0]
    yield host
    host._destroy_domains()   # nothing of one test survives into the next


@pytest.fixture
def driver(lv, tmp_path):
    conf = godwit_conf.new_conf()
    conf([], project="godwit", default_config_files=[])
    conf.set_override("state_path", str(tmp_path / "state"))
    conf.set_override("connection_uri", lv.uri, group="libvirt")
    conf.set_override("vif_driver", "noop", group="compute")
    conf.set_override("volume_driver", "fake", group="compute")
    drv = LibvirtDriver(conf, "lv-enum", str(tmp_path / "instances"))
    yield drv
    drv.cleanup_host()


def new_instance():
    return {"uuid": str(uuid.uuid4()), "display_name": "enum", "memory_mb": 64, "vcpus": 1,
            "root_gb": 1, "ephemeral_gb": 0}


def define_foreign(conn, name, dom_uuid, metadata_uuid=None, start=False):
    """A small domain Godwit did not make (no disk: QEMU just waits in its BIOS)."""
    meta = ""
    if metadata_uuid:
        meta = (f"<metadata><godwit:instance xmlns:godwit='{config.METADATA_NS}' "
                f"uuid='{metadata_uuid}'/></metadata>")
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><uuid>{dom_uuid}</uuid>{meta}"
        "<memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
    if start:
        dom.create()
    return dom


def test_list_domains_and_remove_domain(driver, lv):
    running, stopped = new_instance(), new_instance()
    conn = lv.connect()
    try:
        tag = uuid.uuid4().hex[:8]
        foreign = [define_foreign(conn, f"other-{tag}", str(uuid.uuid4()), start=True),
                   define_foreign(conn, "instance-0000000a", str(uuid.uuid4())),
                   define_foreign(conn, f"instance-{uuid.uuid4()}", str(uuid.uuid4())),
                   define_foreign(conn, f"mislabelled-{tag}", str(uuid.uuid4()),
                                  metadata_uuid=str(uuid.uuid4()))]
        assert driver.list_domains() == []

        driver.spawn(running, [], [])
        driver.spawn(stopped, [], [])
        driver.power_off(stopped)
        assert conn.lookupByUUIDString(running["uuid"]).isActive()
        assert not conn.lookupByUUIDString(stopped["uuid"]).isActive()

        assert_domains_enumerated(driver, running["uuid"], stopped["uuid"])
        [found] = driver.list_domains()
        assert found["persistent"] and not found["incoming"]
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByUUIDString(stopped["uuid"])   # undefined, not just stopped
        assert conn.lookupByUUIDString(running["uuid"]).isActive()

        # What is not Godwit's is refused by uuid too, and stays.
        for dom in foreign:
            with pytest.raises(exception.HypervisorError, match="not an instance of Godwit"):
                driver.remove_domain(dom.UUIDString())
        assert {d.UUIDString() for d in conn.listAllDomains()} == \
            {d.UUIDString() for d in foreign} | {running["uuid"]}
        driver.remove_domain(str(uuid.uuid4()))   # no such domain: quiet
    finally:
        conn.close()


def test_a_paused_guest_is_active_and_kept(driver, lv):
    instance = new_instance()
    driver.spawn(instance, [], [])
    conn = lv.connect()
    try:
        conn.lookupByUUIDString(instance["uuid"]).suspend()
        [found] = driver.list_domains()
        assert found["active"] and found["power_state"] == states.PAUSED_POWER
        with pytest.raises(exception.GuestRunningHere, match="paused"):
            driver.remove_domain(instance["uuid"])
        assert conn.lookupByUUIDString(instance["uuid"]).isActive()
    finally:
        conn.close()


def test_a_transient_domain_is_listed(driver, lv, tmp_path):
    """A domain without a definition (as an incoming migration's is until
    post_live_migration_at_destination) is listed as not persistent; once it is
    off it is gone from libvirt, so the listing forgets it."""
    instance = new_instance()
    driver.spawn(instance, [], [])
    conn = lv.connect()
    try:
        dom = conn.lookupByUUIDString(instance["uuid"])
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)   # now transient
        [found] = driver.list_domains()
        assert found["defined"] and found["active"] and not found["persistent"]
        with pytest.raises(exception.GuestRunningHere):
            driver.remove_domain(instance["uuid"])
        driver.power_off(instance)
        assert driver.list_domains() == []
    finally:
        conn.close()
