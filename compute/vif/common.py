"""What the real VIF drivers share: names, VIF details, the libvirt contract.

``domain_interface(instance, vif)`` of every real VIF driver returns the dict
the libvirt driver turns into the guest's ``<interface>``::

    {"type": "ethernet" | "bridge",
     "source_bridge": "<bridge name>",     # informational for "ethernet"
     "target_dev": "tap<first 11 chars of the VIF uuid>",
     "mac": vif["address"],
     "model": "virtio",
     "virtualport": None | {"type": "openvswitch", "interfaceid": vif uuid}}

Both drivers here return ``type: "ethernet"`` with ``virtualport: None``: plug()
creates the tap and wires it (bridge port or OVS port with its iface-id), so
libvirt must take the tap as it is: ``<interface type='ethernet'><target
dev='tapX' managed='no'/>``. Because pre_live_migration plugs the VIFs on the
destination, the tap and its switch port exist there before the destination
QEMU starts, long before the switch-over; libvirt never creates, re-adds or
deletes them (with ``type='bridge'`` and an openvswitch virtualport libvirt
deletes and re-adds the OVS port when QEMU starts, which re-triggers port
binding; os-vif documents that as bug 1734320). unplug() removes the tap.
"""

import json

from godwit import exception

TAP_PREFIX = "tap"
#: Nova's convention: "tap" + the first 11 characters of the VIF (port) uuid,
#: 14 characters in all, within Linux's 15-character interface names.
TAP_ID_LENGTH = 11


# Defined in godwit.exception so that it crosses RPC as itself (not RemoteError).
VifPlugFailed = exception.VifPlugFailed


def tap_name(vif):
    return TAP_PREFIX + vif["uuid"][:TAP_ID_LENGTH]


def details(vif):
    """The VIF's details as a dict (the database keeps them as JSON text)."""
    raw = vif.get("details") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def mtu(vif, default=None):
    value = details(vif).get("mtu")
    return int(value) if value else default


def host_side_mac(address):
    """The tap's own MAC for a guest MAC: fe:xx:... as libvirt makes it.

    A Linux bridge treats each port's own address as local: a tap carrying the
    guest's MAC would make the bridge swallow the frames meant for the guest.
    """
    return "fe" + address.lower()[2:]


def interface(vif, bridge, virtualport=None, type_="ethernet"):
    return {"type": type_, "source_bridge": bridge, "target_dev": tap_name(vif),
            "mac": vif["address"], "model": "virtio", "virtualport": virtualport}
