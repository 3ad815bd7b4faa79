"""The practitioners' continuity test, as pieces: a two-host network and a pinger.

:class:`TwoHostNetwork` builds, with iproute2, what two hypervisor hosts and
their physical network look like, on one machine:

* network namespaces ``hostA`` and ``hostB`` (each libvirt daemon runs in
  one; see tests/real/hosts.py) and ``pinger``;
* a management network: a bridge in this (the root) namespace with
  198.51.100.1/24 and one veth into each host namespace (198.51.100.2 and .3),
  which carries the agents' libvirt connections, the peer-to-peer libvirt
  connection and QEMU's migration stream;
* the guests' network: bridge ``brA`` in hostA and ``brB`` in hostB, joined
  by a veth pair (the wire between the two hosts), and the pinger's veth on
  brA with 203.0.113.1/24. Guests take addresses in 203.0.113.0/24.

All addresses are documentation ranges, never the machine's own, and exist only
in the namespaces and the bridge made here. :meth:`TwoHostNetwork.remove`
deletes everything (deleting a namespace deletes its links).

:class:`Pinger` runs ``ping -D -i 0.01`` from the pinger namespace and
reports what was sent, what came back, and the longest gap between two
replies: the number a user notices (ping-continuity.md: with the wire cut,
one direction lost only 3 pings but went silent for 549 ms).
"""

import json
import os
import re
import secrets
import signal
import subprocess
import tempfile

from godwit.testing import wait_for
from tests.real import guest_kernel

MGMT_PREFIX = "198.51.100"
GUEST_PREFIX = "203.0.113"
PINGER_IP = f"{GUEST_PREFIX}.1"
GUEST_IP = f"{GUEST_PREFIX}.10"
#: The guest kernel's name in the libvirt driver's image store.
IMAGE = "continuity"
#: A reply later than this counts as lost (ping -W).
REPLY_TIMEOUT_S = 1


def ip(*args, netns=None, check=True):
    cmd = ["ip"] + (["-n", netns] if netns else []) + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc


class TwoHostNetwork:
    def __init__(self):
        tag = secrets.token_hex(2)
        self.tag = tag
        self.hosts = [f"gw{tag}hostA", f"gw{tag}hostB"]
        self.pinger = f"gw{tag}pinger"
        self.mgmt_bridge = f"gw{tag}mgmt"
        self.mgmt_addresses = [f"{MGMT_PREFIX}.2", f"{MGMT_PREFIX}.3"]
        self.guest_bridges = ["brA", "brB"]  # inside the host namespaces
        self._made_namespaces = []
        self._made_root_links = []

    def _netns(self, name):
        ip("netns", "add", name)
        self._made_namespaces.append(name)
        ip("link", "set", "lo", "up", netns=name)

    def _bridge(self, name, netns=None):
        ip("link", "add", name, "type", "bridge", "stp_state", 0, "forward_delay", 0,
           netns=netns)
        ip("link", "set", name, "up", netns=netns)

    @staticmethod
    def remove_stale():
        """Remove what a killed earlier run left: its management bridge (which would
        hold 198.51.100.1 too) and its namespaces. Two runs at once are not supported."""
        removed = []
        out = ip("-o", "-4", "addr", "show").stdout
        for name in set(re.findall(rf"^\d+: (gw[0-9a-f]{{4}})mgmt\s+inet {MGMT_PREFIX}\.1/",
                                   out, re.M)):
            ip("link", "del", f"{name}mgmt", check=False)
            for suffix in ("hostA", "hostB", "pinger"):
                ip("netns", "del", f"{name}{suffix}", check=False)
            removed.append(name)
        return removed

    def create(self):
        stale = self.remove_stale()
        if stale:
            print(f"removed the test network of an earlier run: {stale}")
        try:
            for ns in (*self.hosts, self.pinger):
                self._netns(ns)
            self._bridge(self.mgmt_bridge)
            self._made_root_links.append(self.mgmt_bridge)
            ip("addr", "add", f"{MGMT_PREFIX}.1/24", "dev", self.mgmt_bridge)
            for i, (ns, address) in enumerate(zip(self.hosts, self.mgmt_addresses)):
                root_end = f"gw{self.tag}m{i}"
                ip("link", "add", root_end, "type", "veth", "peer", "name", "mgmt0",
                   "netns", ns)
                self._made_root_links.append(root_end)
                ip("link", "set", root_end, "master", self.mgmt_bridge)
                ip("link", "set", root_end, "up")
                ip("addr", "add", f"{address}/24", "dev", "mgmt0", netns=ns)
                ip("link", "set", "mgmt0", "up", netns=ns)
                self._bridge(self.guest_bridges[i], netns=ns)
            a, b = self.hosts
            # The wire between the hosts' guest bridges.
            ip("link", "add", "wire", "netns", a, "type", "veth", "peer", "name", "wire",
               "netns", b)
            for ns, br in zip(self.hosts, self.guest_bridges):
                ip("link", "set", "wire", "master", br, netns=ns)
                ip("link", "set", "wire", "up", netns=ns)
            ip("link", "add", "pinger", "netns", a, "type", "veth", "peer", "name", "eth0",
               "netns", self.pinger)
            ip("link", "set", "pinger", "master", self.guest_bridges[0], netns=a)
            ip("link", "set", "pinger", "up", netns=a)
            ip("addr", "add", f"{PINGER_IP}/24", "dev", "eth0", netns=self.pinger)
            ip("link", "set", "eth0", "up", netns=self.pinger)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self):
        errors = []
        for link in reversed(self._made_root_links):
            proc = ip("link", "del", link, check=False)
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                errors.append(proc.stderr.strip())
        for ns in reversed(self._made_namespaces):
            proc = ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr.strip())
        self._made_root_links, self._made_namespaces = [], []
        return errors

    def ports(self, host_index, bridge=None):
        """Names of the links enslaved to a host's guest bridge."""
        ns = self.hosts[host_index]
        bridge = bridge or self.guest_bridges[host_index]
        out = ip("-o", "link", "show", "master", bridge, netns=ns).stdout
        return sorted(re.findall(r"^\d+: ([^:@]+)", out, re.M))

    def links(self, host_index):
        out = ip("-o", "link", "show", netns=self.hosts[host_index]).stdout
        return sorted(re.findall(r"^\d+: ([^:@]+)", out, re.M))

    def ping_once(self, address, timeout=1):
        proc = subprocess.run(["ip", "netns", "exec", self.pinger, "ping", "-n", "-c", "1",
                               "-W", str(timeout), address], capture_output=True)
        return proc.returncode == 0


def write_image(store, kernel, initrd, ip=GUEST_IP):
    """The guest kernel as image :data:`IMAGE` in a libvirt image store
    (``[libvirt] image_store_path``), taking address ``ip``."""
    os.makedirs(store, exist_ok=True)
    with open(os.path.join(store, IMAGE + ".json"), "w") as f:
        json.dump({"kernel": kernel, "ramdisk": initrd,
                   "cmdline": f"console=ttyS0 panic=-1 quiet guestip={ip}/24"}, f)
    return store


def console(path):
    """The guest's serial console log so far ("" before it exists)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_answering(net, console_path, ip=GUEST_IP, boots=1):
    """Wait for the guest's ``boots``-th ready line, then for a ping reply."""
    wait_for("the guest kernel's ready line",
             lambda: console(console_path).count(guest_kernel.READY) >= boots,
             timeout=120, interval=0.2)
    wait_for("a ping reply from the guest", lambda: net.ping_once(ip), timeout=30,
             interval=0.2)


REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")
SENT = re.compile(r"(\d+) packets transmitted, (\d+) received")


class Pinger:
    """``ping -D -i 0.01`` in a namespace, from start() until stop()."""

    def __init__(self, netns, address, interval=0.01):
        self.cmd = ["ip", "netns", "exec", netns, "ping", "-n", "-D", "-i", str(interval),
                    "-W", str(REPLY_TIMEOUT_S), address]
        self.proc = None

    def start(self):
        # To a file, not a pipe: nobody reads a pipe until stop(), and ping
        # blocks - stops pinging - once the 64 KiB pipe buffer is full (~800 lines).
        self.out = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     text=True)
        return self

    def stop(self):
        """Stop pinging; {sent, received, lost, longest_gap_ms, gap_end} (times: epoch s)."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        self.out.seek(0)
        out = self.out.read()
        self.out.close()
        replies = [(float(m.group(1)), int(m.group(2)))
                   for m in map(REPLY.match, out.splitlines()) if m]
        summary = SENT.search(out)
        if summary is None:
            raise RuntimeError(f"ping printed no summary: {out[-500:]}")
        sent, received = int(summary.group(1)), int(summary.group(2))
        gap, gap_end = 0.0, None
        for (t0, _), (t1, _) in zip(replies, replies[1:]):
            if t1 - t0 > gap:
                gap, gap_end = t1 - t0, t1
        return {"sent": sent, "received": received, "lost": sent - received,
                "longest_gap_ms": round(gap * 1000, 1), "gap_end": gap_end,
                "last_reply": replies[-1][0] if replies else None}
