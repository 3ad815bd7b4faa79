"""Domain XML building and rewriting (compute.virt.libvirt.config); needs no libvirtd."""

import xml.etree.ElementTree as ET

import pytest

from compute.virt.libvirt import config

INSTANCE = {"uuid": "6f1b1c1e-4c5d-4d36-9b8e-0d3c6b1f2a10", "display_name": "vm1",
            "memory_mb": 128, "vcpus": 1}
TAP = {"type": "ethernet", "source_bridge": "brA", "target_dev": "tap6f1b1c1e-4c",
       "mac": "fa:16:3e:00:00:01", "model": "virtio", "virtualport": None}


def test_domain_xml_describes_the_instance():
    xml = config.domain_xml(INSTANCE, "/i/a/disk", "/i/a/console.log", interfaces=[TAP])
    dom = ET.fromstring(xml)
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "instance-" + INSTANCE["uuid"]
    assert dom.findtext("uuid") == INSTANCE["uuid"]
    assert dom.find("memory").text == "128" and dom.find("memory").get("unit") == "MiB"
    assert dom.find("devices/disk/source").get("file") == "/i/a/disk"
    assert dom.find("devices/disk/driver").get("type") == "qcow2"
    assert dom.find("devices/memballoon").get("model") == "none"
    assert dom.find("devices/serial/source").get("path") == "/i/a/console.log"
    assert dom.find("devices/interface/target").get("managed") == "no"
    assert config.instance_uuid(xml) == INSTANCE["uuid"]
    assert config.local_disk_targets(xml) == ["vda"]


def test_iscsi_volume_disk_follows_the_contract():
    el = config.volume_disk_element(
        {"driver_volume_type": "iscsi",
         "data": {"target_portal": "127.0.0.1:3260", "target_iqn": "iqn.2026-11.dev:v1",
                  "target_lun": 1}}, "vdb")
    assert (el.tag, el.get("type"), el.get("device")) == ("disk", "network", "disk")
    assert el.find("driver").get("type") == "raw"
    source = el.find("source")
    assert (source.get("protocol"), source.get("name")) == ("iscsi", "iqn.2026-11.dev:v1/1")
    assert (source.find("host").get("name"), source.find("host").get("port")) == \
        ("127.0.0.1", "3260")
    assert (el.find("target").get("dev"), el.find("target").get("bus")) == ("vdb", "virtio")


def test_block_fake_and_unknown_volumes():
    el = config.volume_disk_element({"driver_volume_type": "block",
                                     "data": {"device_path": "/dev/loop3"}}, "vdc")
    assert el.get("type") == "block" and el.find("source").get("dev") == "/dev/loop3"
    assert config.volume_disk_element({"driver_volume_type": "fake"}, "vdb") is None
    with pytest.raises(ValueError, match="rbd"):
        config.volume_disk_element({"driver_volume_type": "rbd", "data": {}}, "vdb")


def test_volume_targets_keep_requested_names_and_fill_gaps():
    bdms = [{"device_name": "/dev/vdc"}, {"device_name": None}, {"device_name": "/dev/vdc"}]
    assert config.volume_targets(bdms) == ["vdc", "vdb", "vdd"]


def test_bridge_and_openvswitch_interfaces():
    el = config.interface_element(dict(TAP, type="bridge", virtualport={
        "type": "openvswitch", "interfaceid": "port-1"}))
    assert el.get("type") == "bridge" and el.find("source").get("bridge") == "brA"
    assert el.find("target").get("managed") is None
    assert el.find("virtualport").get("type") == "openvswitch"
    assert el.find("virtualport/parameters").get("interfaceid") == "port-1"


def test_destination_xml_is_rewritten_for_the_destination():
    vol = config.volume_disk_element({"driver_volume_type": "block",
                                      "data": {"device_path": "/dev/loop1"}}, "vdb")
    xml = config.domain_xml(INSTANCE, "/src/inst/u/disk", "/src/inst/u/console.log",
                            interfaces=[TAP], volume_disks=[vol])
    dom = ET.fromstring(xml)
    ET.SubElement(dom.find("devices"), "graphics", type="vnc", listen="10.0.0.1")
    dest_tap = dict(TAP, source_bridge="brB", target_dev="tapB")
    dest_vol = config.volume_disk_element({"driver_volume_type": "block",
                                           "data": {"device_path": "/dev/loop7"}}, "vdb")
    out = ET.fromstring(config.destination_xml(
        ET.tostring(dom, encoding="unicode"), "/src/inst", "/dst/inst",
        graphics_listen="10.0.0.2", interfaces={TAP["mac"]: dest_tap},
        volume_disks={"vdb": dest_vol}))
    disks = out.findall("devices/disk")
    assert disks[0].find("source").get("file") == "/dst/inst/u/disk"
    assert disks[1].find("source").get("dev") == "/dev/loop7"
    assert out.find("devices/serial/source").get("path") == "/dst/inst/u/console.log"
    assert out.find("devices/interface/target").get("dev") == "tapB"
    assert out.find("devices/graphics").get("listen") == "10.0.0.2"
    # Shared storage: the same path on both sides leaves the disk where it is.
    same = ET.fromstring(config.destination_xml(xml, "/src/inst", "/src/inst"))
    assert same.find("devices/disk/source").get("file") == "/src/inst/u/disk"


def test_direct_kernel_boot_and_its_relocation():
    boot = {"kernel": "/src/inst/u/kernel", "initrd": "/src/inst/u/ramdisk",
            "cmdline": "console=ttyS0 guestip=203.0.113.10/24"}
    xml = config.domain_xml(INSTANCE, "/src/inst/u/disk", "/src/inst/u/console.log", boot=boot)
    dom = ET.fromstring(xml)
    assert dom.findtext("os/kernel") == "/src/inst/u/kernel"
    assert dom.findtext("os/initrd") == "/src/inst/u/ramdisk"
    assert dom.findtext("os/cmdline") == boot["cmdline"]
    assert dom.find("os/boot") is None
    out = ET.fromstring(config.destination_xml(xml, "/src/inst", "/dst/inst"))
    assert out.findtext("os/kernel") == "/dst/inst/u/kernel"
    assert out.findtext("os/initrd") == "/dst/inst/u/ramdisk"
    # Without an image: boot from the root disk.
    plain = ET.fromstring(config.domain_xml(INSTANCE, "/i/disk", "/i/console.log"))
    assert plain.find("os/boot").get("dev") == "hd" and plain.find("os/kernel") is None


def test_image_store_copies_boot_files_and_names_what_is_missing(tmp_path):
    from compute.virt.libvirt import images
    from godwit import exception

    store = tmp_path / "images"
    store.mkdir()
    (store / "vmlinuz").write_bytes(b"KERNEL")
    (store / "initrd.gz").write_bytes(b"INITRD")
    (store / "img1.json").write_text('{"kernel": "vmlinuz", "ramdisk": "initrd.gz", '
                                     '"cmdline": "quiet"}')
    inst_dir = tmp_path / "inst"
    inst_dir.mkdir()
    boot = images.boot_files(str(store), "h1", {"image_ref": "img1"}, str(inst_dir))
    assert boot == {"kernel": str(inst_dir / "kernel"), "initrd": str(inst_dir / "ramdisk"),
                    "cmdline": "quiet"}
    assert (inst_dir / "kernel").read_bytes() == b"KERNEL"
    assert (inst_dir / "ramdisk").read_bytes() == b"INITRD"
    # A copy already in the instance directory is kept (a changed store does not matter).
    (store / "vmlinuz").write_bytes(b"NEWER")
    images.boot_files(str(store), "h1", {"image_ref": "img1"}, str(inst_dir))
    assert (inst_dir / "kernel").read_bytes() == b"KERNEL"
    assert images.boot_files(str(store), "h1", {"image_ref": ""}, str(inst_dir)) is None
    with pytest.raises(exception.HypervisorError, match="img2.json"):
        images.boot_files(str(store), "h1", {"image_ref": "img2"}, str(inst_dir))
    (store / "bad.json").write_text('{"kernel": "missing"}')
    with pytest.raises(exception.HypervisorError, match="does not exist"):
        images.load(str(store), "h1", "bad")
    with pytest.raises(exception.HypervisorError, match="not a valid image name"):
        images.load(str(store), "h1", "../etc/passwd")
