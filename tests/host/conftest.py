"""Real host plumbing for the host driver tests: namespaces, links, OVS, tgtd.

Everything a test creates is registered with the ``undo`` fixture as it is
created and removed at teardown in reverse order, also when the test fails.
Names carry a random 6-hex-digit tag ("gw" + tag + role) so that parallel or
leftover runs never collide. Test addresses are in 198.51.100.0/24 and live
only inside namespaces the tests create (the machine's own range is never
used).

These tests need root and the tools of tools/ensure-host-plumbing.sh (which
`make test` runs); without them they skip, except under CI=true, where that
is a failure.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from godwit import conf as godwit_conf

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("ip", "ping", "nft", "ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "ovsdb-tool",
         "ovs-appctl",
         "tgtd", "tgtadm", "iscsi-inq", "losetup", "qemu-img")
SBIN = "/usr/sbin:/sbin"


def _which(tool):
    return shutil.which(tool) or shutil.which(tool, path=SBIN)


def require_host_plumbing(*tools):
    problems = []
    if os.geteuid() != 0:
        problems.append("these tests need root")
    problems += [f"{t} is missing" for t in tools or TOOLS if not _which(t)]
    if not problems:
        return
    message = "; ".join(problems) + " (run tools/ensure-host-plumbing.sh; make test does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(*cmd, check=True, netns=None, timeout=30, **kwargs):
    cmd = [str(c) for c in cmd]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def tag():
    return secrets.token_hex(3)


def host_conf(state_path, **overrides):
    """A Godwit ConfigOpts for one fake host: {'group.option': value}."""
    conf = godwit_conf.new_conf()
    conf([], project="godwit", default_config_files=[])
    conf.set_override("state_path", str(state_path))
    for key, value in overrides.items():
        group, _, name = key.rpartition(".")
        conf.set_override(name, value, group=group or None)
    return conf


def ping(netns, address, count=1, wait=1, attempts=1):
    """True when one of ``attempts`` pings of ``count`` packets got a reply."""
    for _ in range(attempts):
        proc = run("ping", "-n", "-q", "-c", count, "-i", "0.2", "-W", wait, address,
                   netns=netns, check=False)
        if proc.returncode == 0:
            return True
    return False


class Undo:
    """A stack of clean-up callables, run in reverse; failures are collected."""

    def __init__(self):
        self.steps = []

    def push(self, fn, *args, **kwargs):
        self.steps.append((fn, args, kwargs))

    def run(self):
        errors = []
        while self.steps:
            fn, args, kwargs = self.steps.pop()
            try:
                fn(*args, **kwargs)
            except Exception as e:  # keep cleaning
                errors.append(f"{getattr(fn, '__name__', fn)}{args}: {e}")
        return errors


@pytest.fixture
def undo():
    stack = Undo()
    yield stack
    errors = stack.run()
    assert not errors, "clean-up failed: " + "; ".join(errors)


class Net:
    """Namespaces and links for one test, each removed by ``undo``."""

    def __init__(self, undo):
        self.undo = undo
        self.tag = tag()

    def name(self, role):
        return f"gw{self.tag}{role}"[:15]

    def netns(self, role):
        name = self.name(role)
        run("ip", "netns", "add", name)
        self.undo.push(run, "ip", "netns", "del", name, check=False)
        run("ip", "link", "set", "lo", "up", netns=name)
        return name

    def bridge(self, name, netns=None):
        run("ip", "link", "add", name, "type", "bridge", "stp_state", "0",
            "forward_delay", "0", netns=netns)
        self.undo.push(run, "ip", "link", "del", name, netns=netns, check=False)
        run("ip", "link", "set", name, "up", netns=netns)
        return name

    def veth(self, name, peer, netns=None, peer_netns=None):
        """A veth pair; each end in its namespace (None: the root one), both up."""
        cmd = ["ip", "link", "add", name]
        if netns:
            cmd += ["netns", netns]
        cmd += ["type", "veth", "peer", "name", peer]
        if peer_netns:
            cmd += ["netns", peer_netns]
        run(*cmd)
        # Deleting one end deletes both; a namespace's removal does it too.
        self.undo.push(run, "ip", "link", "del", name, netns=netns, check=False)
        run("ip", "link", "set", name, "up", netns=netns)
        run("ip", "link", "set", peer, "up", netns=peer_netns)
        return name, peer

    def address(self, dev, cidr, netns):
        run("ip", "addr", "add", cidr, "dev", dev, netns=netns)

    def guest(self, tap, mac, ip, netns=None):
        """tap_guest.py on ``tap``: a guest that answers ARP and ping at ``ip``."""
        cmd = [sys.executable, os.path.join(HERE, "tap_guest.py"), tap, mac, ip]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.undo.push(_stop, proc)
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"tap guest on {tap} failed: {proc.stderr.read()}"
        return proc


def _stop(proc, timeout=5):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture
def net(undo):
    require_host_plumbing("ip", "ping")
    return Net(undo)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --- Open vSwitch, userspace datapath, in a run directory of its own ----------
class Ovs:
    """ovsdb-server and ovs-vswitchd as children of the test process (no --detach,
    so that the tests reap them), with their sockets and logs in ``rundir``."""

    def __init__(self, rundir):
        self.rundir = rundir
        self.db_sock = os.path.join(rundir, "db.sock")
        self.connection = "unix:" + self.db_sock
        self.env = dict(os.environ, OVS_RUNDIR=rundir, OVS_LOGDIR=rundir, OVS_DBDIR=rundir)
        self.procs = {}

    def vsctl(self, *args, check=True):
        return run("ovs-vsctl", f"--db={self.connection}", "--timeout=10", *args,
                   check=check, env=self.env)

    def ctl(self, name):
        return os.path.join(self.rundir, f"{name}.ctl")

    def _spawn(self, name, *args):
        log = open(os.path.join(self.rundir, f"{name}.out"), "w")
        proc = subprocess.Popen(
            [_which(name), *args, f"--log-file={os.path.join(self.rundir, name + '.log')}",
             f"--unixctl={self.ctl(name)}"], stdout=log, stderr=subprocess.STDOUT,
            env=self.env)
        log.close()
        self.procs[name] = proc
        wait_for(lambda: proc.poll() is None and os.path.exists(self.ctl(name)), 10,
                 f"{name} (see {self.rundir})")

    def start(self):
        # The userspace datapath of every ovs-vswitchd is the tap "ovs-netdev" of
        # its namespace: a second one next to a running one fails to add ports.
        if run("ip", "link", "show", "dev", "ovs-netdev", check=False).returncode == 0:
            raise AssertionError("another Open vSwitch userspace datapath (link "
                                 "ovs-netdev) exists in this namespace; stop that "
                                 "ovs-vswitchd first ('ovs-appctl exit --cleanup')")
        db = os.path.join(self.rundir, "conf.db")
        run("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema")
        self._spawn("ovsdb-server", db, f"--remote=punix:{self.db_sock}")
        wait_for(lambda: os.path.exists(self.db_sock), 10, "ovsdb-server's socket")
        self.vsctl("--no-wait", "init")
        self._spawn("ovs-vswitchd", self.connection)
        return self

    def stop(self):
        """exit --cleanup also removes the datapath (ovs-netdev and bridge ports)."""
        for name in ("ovs-vswitchd", "ovsdb-server"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            run("ovs-appctl", "-t", self.ctl(name), "exit",
                *(["--cleanup"] if name == "ovs-vswitchd" else []), check=False,
                env=self.env, timeout=10)
            _stop(proc)


@pytest.fixture(scope="session")
def ovs(tmp_path_factory):
    require_host_plumbing("ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "ovsdb-tool",
                          "ovs-appctl")
    server = Ovs(str(tmp_path_factory.mktemp("ovs-run")))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- tgtd, the userspace iSCSI target ---------------------------------------------
class Tgtd:
    IQN_PREFIX = "iqn.2026-11.org.godwit.test"

    def __init__(self, workdir, address="127.0.0.1"):
        self.workdir = workdir
        self.address = address
        self.port = free_port()
        self.portal = f"{address}:{self.port}"
        # Its own control socket (/var/run/tgtd/socket.<N>): never a system tgtd's.
        self.control = 1000 + secrets.randbelow(30000)
        self.proc = None
        self.tids = []

    def adm(self, *args, check=True):
        return run("tgtadm", "-C", self.control, "--lld", "iscsi", *args, check=check)

    def start(self):
        self.log = open(os.path.join(self.workdir, "tgtd.log"), "w")
        self.proc = subprocess.Popen(
            [_which("tgtd"), "-f", "--iscsi", f"portal={self.portal}", "-C",
             str(self.control)], stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, "tgtd exited; see " + self.log.name
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex((self.address, self.port)) == 0
        wait_for(up, 10, f"tgtd on {self.portal}")
        wait_for(lambda: self.adm("--op", "show", "--mode", "target",
                                  check=False).returncode == 0, 10, "tgtadm")
        return self

    def add_lun(self, backing_file, name):
        tid = len(self.tids) + 1
        iqn = f"{self.IQN_PREFIX}:{name}"
        self.adm("--op", "new", "--mode", "target", "--tid", tid, "-T", iqn)
        self.tids.append(tid)
        self.adm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", 1,
                 "-b", backing_file)
        self.adm("--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL")
        return iqn

    def stop(self):
        for tid in self.tids:
            self.adm("--op", "delete", "--mode", "target", "--tid", tid, "--force",
                     check=False)
        if self.proc is not None:
            self.adm("--op", "delete", "--mode", "system", check=False)
            _stop(self.proc, timeout=3)
            self.log.close()
        for suffix in ("", ".lock"):
            try:
                os.unlink(f"/var/run/tgtd/socket.{self.control}{suffix}")
            except FileNotFoundError:
                pass


@pytest.fixture
def tgtd(tmp_path, undo):
    require_host_plumbing("tgtd", "tgtadm")
    target = Tgtd(str(tmp_path))
    undo.push(target.stop)
    return target.start()


@pytest.fixture
def ovs_driver(ovs, net, tmp_path):
    """The OVS VIF driver on a bridge of its own in the session's Open vSwitch."""
    from compute.vif.ovs import OvsVifDriver
    bridge = net.name("i")
    net.undo.push(ovs.vsctl, "--if-exists", "del-br", bridge, check=False)
    conf = host_conf(tmp_path, **{"os_vif_ovs.ovsdb_connection": ovs.connection,
                                  "os_vif_ovs.ovs_vsctl_timeout": 10,
                                  "vif_ovs.bridge": bridge})
    drv = OvsVifDriver(conf, "hostA")
    net.undo.push(drv.close)
    return drv
