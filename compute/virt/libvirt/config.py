"""Domain XML: built from an instance, rewritten for a migration's destination.

Pure functions over strings and dicts (no libvirt calls), so they are easy to
read and to test. The XML follows libvirt's domain format
(https://libvirt.org/formatdomain.html).

Two device mappings are shared contracts with the VIF and volume drivers:

* a VIF driver's ``domain_interface(instance, vif)`` dict (type, source_bridge,
  target_dev, mac, model, virtualport) -> ``<interface>`` (:func:`interface_element`);
* a volume driver's connection_info (``driver_volume_type`` iscsi, block or
  fake) -> ``<disk>`` (:func:`volume_disk_element`; fake volumes have none).
"""

import xml.etree.ElementTree as ET

METADATA_NS = "https://godwit.dev/xmlns/libvirt/instance/1.0"
DOMAIN_PREFIX = "instance-"


def domain_name(instance):
    return DOMAIN_PREFIX + instance["uuid"]


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()
                                     if v is not None})
    if text is not None:
        el.text = str(text)
    return el


def volume_targets(volume_bdms):
    """Target device names for the volumes, in order: the bdm's own, else vdb, vdc..."""
    taken = {"vda"}
    names = []
    for bdm in volume_bdms:
        name = (bdm.get("device_name") or "").rsplit("/", 1)[-1]
        if not name or name in taken:
            name = next(f"vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"vd{c}" not in taken)
        taken.add(name)
        names.append(name)
    return names


def volume_disk_element(connection_info, target_dev):
    """The ``<disk>`` for a connected volume, or None for a fake volume.

    :raises: ValueError for a connection type this driver cannot attach.
    """
    kind = connection_info.get("driver_volume_type")
    data = connection_info.get("data") or {}
    if kind == "fake":
        return None
    if kind == "iscsi":
        disk = ET.Element("disk", type="network", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", cache="none")
        source = _sub(disk, "source", protocol="iscsi",
                      name=f"{data['target_iqn']}/{data.get('target_lun', 0)}")
        host, _, port = data["target_portal"].rpartition(":")
        _sub(source, "host", name=host or data["target_portal"], port=port or "3260")
    elif kind == "block":
        disk = ET.Element("disk", type="block", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", cache="none")
        _sub(disk, "source", dev=data["device_path"])
    else:
        raise ValueError(f"volume connection type {kind!r} is not supported by the libvirt "
                         "driver (iscsi, block and fake are)")
    _sub(disk, "target", dev=target_dev, bus="virtio")
    _sub(disk, "serial", connection_info.get("volume_id") or data.get("volume_id"))
    return disk


def interface_element(spec):
    """The ``<interface>`` for a VIF driver's ``domain_interface`` dict."""
    iface = ET.Element("interface", type=spec["type"])
    _sub(iface, "mac", address=spec["mac"])
    if spec["type"] == "bridge" and spec.get("source_bridge"):
        _sub(iface, "source", bridge=spec["source_bridge"])
    if spec.get("target_dev"):
        # An ethernet tap is the VIF driver's (it plugged it before the domain
        # starts, and unplugs it): libvirt must neither create nor delete it.
        _sub(iface, "target", dev=spec["target_dev"],
             managed="no" if spec["type"] == "ethernet" else None)
    _sub(iface, "model", type=spec.get("model") or "virtio")
    vp = spec.get("virtualport")
    if vp:
        port = _sub(iface, "virtualport", type=vp["type"])
        if vp.get("interfaceid"):
            _sub(port, "parameters", interfaceid=vp["interfaceid"])
    return iface


def domain_xml(instance, disk_path, console_path, virt_type="qemu", disk_cache="none",
               interfaces=(), volume_disks=(), boot=None):
    """The domain of ``instance``: its root disk, console, NICs and volumes.

    ``interfaces`` are ``domain_interface`` dicts; ``volume_disks`` are
    elements from :func:`volume_disk_element`; ``boot`` is None (boot from the
    root disk) or {kernel, initrd, cmdline} for direct kernel boot
    (:func:`compute.virt.libvirt.images.boot_files`).
    """
    dom = ET.Element("domain", type=virt_type)
    _sub(dom, "name", domain_name(instance))
    _sub(dom, "uuid", instance["uuid"])
    meta = _sub(dom, "metadata")
    ET.register_namespace("godwit", METADATA_NS)
    gmeta = ET.SubElement(meta, f"{{{METADATA_NS}}}instance", uuid=instance["uuid"])
    ET.SubElement(gmeta, f"{{{METADATA_NS}}}name").text = instance.get("display_name") or ""
    _sub(dom, "memory", instance["memory_mb"], unit="MiB")
    _sub(dom, "vcpu", instance["vcpus"])
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    if boot:
        _sub(os_el, "kernel", boot["kernel"])
        if boot.get("initrd"):
            _sub(os_el, "initrd", boot["initrd"])
        if boot.get("cmdline"):
            _sub(os_el, "cmdline", boot["cmdline"])
    else:
        _sub(os_el, "boot", dev="hd")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", cache=disk_cache)
    _sub(disk, "source", file=disk_path)
    _sub(disk, "target", dev="vda", bus="virtio")
    for el in volume_disks:
        if el is not None:
            devices.append(el)
    for spec in interfaces:
        devices.append(interface_element(spec))
    # append: with shared storage the destination's QEMU opens the same file
    # while the source's still writes to it; it must not truncate it.
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=console_path, append="on")
    _sub(serial, "target", port=0)
    console = _sub(devices, "console", type="file")
    _sub(console, "source", path=console_path, append="on")
    _sub(console, "target", type="serial", port=0)
    _sub(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def relocate(path, src_dir, dest_dir):
    """``path`` under ``dest_dir`` if it lies under ``src_dir``, else unchanged."""
    if path and src_dir and dest_dir and path.startswith(src_dir.rstrip("/") + "/"):
        return dest_dir.rstrip("/") + path[len(src_dir.rstrip("/")):]
    return path


def destination_xml(xml, src_instances_path, dest_instances_path, graphics_listen=None,
                    interfaces=None, volume_disks=None):
    """The running domain's XML (VIR_DOMAIN_XML_MIGRATABLE) as the destination needs it.

    * files under the source's instances path move under the destination's
      (disks, console logs, a directly booted kernel and ramdisk) - a no-op
      with shared storage;
    * graphics listen on the destination's address, so no 0.0.0.0 is needed;
    * ``interfaces``: {mac: domain_interface dict} from the destination's VIF
      driver replace the NICs with those MACs;
    * ``volume_disks``: {target dev: element or None} from the destination's
      volume connections replace the volume disks (None removes one).
    """
    dom = ET.fromstring(xml)
    devices = dom.find("devices")
    for source in dom.iter("source"):
        for attr in ("file", "path"):
            if source.get(attr):
                source.set(attr, relocate(source.get(attr), src_instances_path,
                                           dest_instances_path))
    for tag in ("kernel", "initrd"):  # direct kernel boot: copies in the instance dir
        el = dom.find(f"os/{tag}")
        if el is not None and el.text:
            el.text = relocate(el.text, src_instances_path, dest_instances_path)
    if graphics_listen:
        for g in devices.findall("graphics"):
            if g.get("listen") is not None:
                g.set("listen", graphics_listen)
            for listen in g.findall("listen"):
                if listen.get("type") == "address":
                    listen.set("address", graphics_listen)
    for index, child in enumerate(list(devices)):
        if child.tag == "interface" and interfaces:
            mac = (child.find("mac").get("address") or "").lower()
            if mac in interfaces:
                devices.remove(child)
                devices.insert(index, interface_element(interfaces[mac]))
        elif child.tag == "disk" and volume_disks:
            target = child.find("target")
            dev = target.get("dev") if target is not None else None
            if dev in volume_disks:
                devices.remove(child)
                if volume_disks[dev] is not None:
                    devices.insert(index, volume_disks[dev])
    # Volumes the source had no element for (e.g. connected after its spawn).
    present = {d.find("target").get("dev") for d in devices.findall("disk")
               if d.find("target") is not None}
    for dev, el in (volume_disks or {}).items():
        if el is not None and dev not in present:
            devices.append(el)
    return ET.tostring(dom, encoding="unicode")


def local_disk_targets(xml):
    """Target devs of the file-backed disks: what block migration copies (not volumes)."""
    dom = ET.fromstring(xml)
    return [d.find("target").get("dev") for d in dom.find("devices").findall("disk")
            if d.get("type") == "file" and d.get("device", "disk") == "disk"]


def disk_files(xml):
    """Paths of the file-backed disks of a domain XML, in device order."""
    dom = ET.fromstring(xml)
    return [d.find("source").get("file") for d in dom.find("devices").findall("disk")
            if d.get("type") == "file" and d.find("source") is not None
            and d.find("source").get("file")]


def instance_uuid(xml):
    """The Godwit instance uuid a domain XML carries in its metadata, or None."""
    dom = ET.fromstring(xml)
    el = dom.find(f"metadata/{{{METADATA_NS}}}instance")
    return el.get("uuid") if el is not None else None
