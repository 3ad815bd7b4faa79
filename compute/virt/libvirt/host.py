"""This host's libvirtd: the connection, and what it tells about the host.

One shared read-write connection per driver, opened on first use and
re-opened if libvirtd restarted (libvirt connections are thread-safe and
libvirt-python releases the GIL during calls). A migration job opens its own
connections (see :mod:`.migration`).
"""

import json
import os
import socket
import threading
import xml.etree.ElementTree as ET

import libvirt
from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)


def _ignore_libvirt_error(ctxt, err):
    """Errors reach us as libvirtError; libvirt's default handler would also print them."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)


def open_connection(uri, host):
    """A new connection to ``uri``; HypervisorError naming the URI if it fails."""
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise exception.HypervisorError(
            host=host, reason=f"cannot connect to libvirt at {uri}: {e}") from e


def capabilities_cpu(caps_xml):
    """(host CPU element as XML, info dict) from a getCapabilities() document."""
    caps = ET.fromstring(caps_xml)
    cpu = caps.find("host/cpu")
    info = {"arch": cpu.findtext("arch"), "model": cpu.findtext("model"),
            "vendor": cpu.findtext("vendor"),
            "features": sorted(f.get("name") for f in cpu.findall("feature"))}
    topo = cpu.find("topology")
    if topo is not None:
        info["topology"] = {k: int(v) for k, v in topo.attrib.items()}
    # compareCPU wants <cpu> with arch, model, vendor and features only.
    clean = ET.Element("cpu")
    for tag in ("arch", "model", "vendor"):
        if cpu.find(tag) is not None:
            ET.SubElement(clean, tag).text = cpu.findtext(tag)
    for f in cpu.findall("feature"):
        ET.SubElement(clean, "feature", name=f.get("name"))
    return ET.tostring(clean, encoding="unicode"), info


def security_driver(caps_xml):
    """The host's security driver: the first secmodel other than 'dac', else 'none'.

    libvirt always lists 'dac' (plain file ownership) beside the real one
    (apparmor, selinux, or 'none' when qemu.conf says security_driver = "none").
    """
    caps = ET.fromstring(caps_xml)
    for model in caps.findall("host/secmodel/model"):
        if model.text and model.text != "dac":
            return model.text
    return "none"


def default_host_ip(conf):
    if conf.libvirt.live_migration_inbound_addr:
        return conf.libvirt.live_migration_inbound_addr
    try:
        return socket.gethostbyname(conf.host)
    except OSError:
        return "127.0.0.1"


class Host:
    def __init__(self, conf, host):
        self.conf = conf
        self.host = host
        self.uri = conf.libvirt.connection_uri
        self._conn = None
        self._lock = threading.Lock()

    def get_connection(self):
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                LOG.warning("Connection to %s lost; reconnecting", self.uri)
            self._conn = open_connection(self.uri, self.host)
            return self._conn

    def close(self):
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None

    def capabilities(self):
        return self.get_connection().getCapabilities()

    def cpu_xml(self):
        return capabilities_cpu(self.capabilities())[0]

    def lookup(self, instance_uuid):
        """The domain with this uuid, or None."""
        try:
            return self.get_connection().lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def host_info(self, instances_path):
        conn = self.get_connection()
        caps = conn.getCapabilities()
        _, cpu = capabilities_cpu(caps)
        model, memory_mb, cpus = conn.getInfo()[:3]
        st = os.statvfs(instances_path)
        return {
            "vcpus": cpus, "memory_mb": memory_mb,
            "local_gb": st.f_blocks * st.f_frsize // 1024 ** 3,
            "hypervisor_type": "QEMU", "hypervisor_version": conn.getVersion(),
            "cpu_info": json.dumps(cpu, sort_keys=True),
            "security_driver": security_driver(caps),
            "host_ip": default_host_ip(self.conf),
            "instances_path": instances_path,
        }
