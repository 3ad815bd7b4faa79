"""Two real libvirt "hosts" on one machine, for the tests in this package.

A root libvirtd always uses the same five directories (/run/libvirt,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, /etc/libvirt), so a
second daemon beside the first fails on its pid files. Each host here gets its
own directory tree, bind-mounted over those five paths inside a private mount
namespace (``unshare --mount --propagation private``), and its own
libvirtd.conf (TCP port, host_uuid: libvirt refuses to migrate between hosts
that report the same one) and qemu.conf (disjoint migration ports, no
security driver, no virtlogd). Both listen on 127.0.0.1 without
authentication: a test set-up, never a deployment (docs/libvirt.md).

The QEMU capabilities cache (/var/cache/libvirt) is kept between runs under
``GODWIT_LIBVIRT_CACHE`` (default /var/tmp/godwit-libvirt-cache/host<N>): a cold
daemon spends about 8 s probing QEMU before it answers.

:func:`start_hosts` returns running hosts; :meth:`LibvirtHost.stop` destroys
their domains, stops the daemon and any QEMU it left (the processes in the
daemon's mount namespace; the namespace and its mounts vanish with them).
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

FIXED_PATHS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt",
               "cache": "/var/cache/libvirt", "log": "/var/log/libvirt",
               "etc": "/etc/libvirt"}
CACHE_ROOT = os.environ.get("GODWIT_LIBVIRT_CACHE", "/var/tmp/godwit-libvirt-cache")
MIGRATION_PORT_BASE = 49152
MIGRATION_PORTS_PER_HOST = 64
PROBE_ATTEMPT_S = 15


class HostSetupError(Exception):
    """The machine cannot run a libvirt host; the message says why."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_libvirt():
    """Errors reach callers as libvirtError; stop libvirt also printing them to stderr."""
    import libvirt

    libvirt.registerErrorHandler(lambda ctxt, err: None, None)


def _probe(uri, timeout):
    """(True, None) once ``uri`` answers getCapabilities, else (False, why).

    Runs in a thread: a daemon that accepted the connection but is still
    probing QEMU (or stuck) would block libvirt.open() without a timeout.
    """
    import libvirt

    result = [False, "no answer within the timeout"]

    def run():
        try:
            conn = libvirt.open(uri)
            try:
                conn.getCapabilities()
            finally:
                conn.close()
            result[:] = [True, None]
        except libvirt.libvirtError as e:
            result[:] = [False, str(e)]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return tuple(result)


def check_prerequisites():
    """Raise HostSetupError naming what is missing (tools/ensure-libvirt.sh installs it)."""
    if os.geteuid() != 0:
        raise HostSetupError("the libvirt hosts need root (mount namespaces, libvirtd)")
    for tool in ("/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img",
                 "/usr/bin/unshare"):
        if not os.access(tool, os.X_OK):
            raise HostSetupError(f"{tool} is missing; run tools/ensure-libvirt.sh")
    try:
        import libvirt  # noqa: F401
    except ImportError as e:
        raise HostSetupError(f"libvirt-python is not installed ({e}); run "
                             "tools/ensure-libvirt.sh") from None


def _die_with_parent():
    """In the child before exec: SIGTERM it if the test process dies without teardown."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LibvirtHost:
    """One libvirtd; ``netns``/``address``: run it in that network namespace,
    listening on that address (default: the machine's, on 127.0.0.1)."""

    def __init__(self, root, index, netns=None, address="127.0.0.1"):
        self.index = index
        self.netns = netns
        self.address = address
        self.name = f"host{index}"
        self.root = os.path.join(root, self.name)
        self.tcp_port = free_port()
        self.host_uuid = str(uuid.uuid4())
        self.migration_ports = (MIGRATION_PORT_BASE + index * MIGRATION_PORTS_PER_HOST,
                                MIGRATION_PORT_BASE + (index + 1) * MIGRATION_PORTS_PER_HOST - 1)
        self.cache_dir = os.path.join(CACHE_ROOT, self.name)
        self.proc = None
        self.mnt_ns = None

    @property
    def uri(self):
        return f"qemu+tcp://{self.address}:{self.tcp_port}/system"

    @property
    def log_path(self):
        return os.path.join(self.root, "libvirtd.log")

    def _dir(self, key):
        return self.cache_dir if key == "cache" else os.path.join(self.root, key)

    def _write_config(self):
        for key in FIXED_PATHS:
            os.makedirs(self._dir(key), exist_ok=True)
        os.makedirs(os.path.join(self.root, "sock"), exist_ok=True)
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)  # libvirtd appends; a test reads only this run's
        etc = self._dir("etc")
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write(f"""listen_tls = 0
listen_tcp = 1
listen_addr = "{self.address}"
tcp_port = "{self.tcp_port}"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_dir = "{self.root}/sock"
host_uuid = "{self.host_uuid}"
log_outputs = "3:file:{self.log_path}"
""")
        lo, hi = self.migration_ports
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write(f"""user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_port_min = {lo}
migration_port_max = {hi}
""")

    def start(self):
        self._write_config()
        mounts = " && ".join(f"mount --bind {self._dir(k)} {p}" for k, p in FIXED_PATHS.items())
        script = (f"{mounts} && exec /usr/sbin/libvirtd --listen -f "
                  f"{self._dir('etc')}/libvirtd.conf -p {self.root}/libvirtd.pid")
        for path in FIXED_PATHS.values():
            os.makedirs(path, exist_ok=True)  # mount points
        self._out = open(os.path.join(self.root, "libvirtd.out"), "w")
        # (ip netns exec execs) unshare, which execs sh, which execs libvirtd:
        # the Popen pid is the daemon's.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            prefix + ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HostSetupError(f"libvirtd of {self.name} exited with "
                                     f"{self.proc.returncode}: {self.output()}")
            if self.mnt_ns is None:
                try:
                    ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
                except OSError:
                    ns = None
                # Until unshare has moved the child, it is still in our own
                # namespace: recording that would make stop() kill everything.
                if ns is not None and ns != os.readlink("/proc/self/ns/mnt"):
                    self.mnt_ns = ns
            if "Driver state initialization failed" in self.output():
                raise HostSetupError(f"libvirtd of {self.name} could not start its QEMU "
                                     f"driver: {self.output()}")
            # At most PROBE_ATTEMPT_S per attempt, so that one connection stuck
            # while the daemon starts cannot use up the whole wait (our guess at
            # one daemon here that stayed silent for 90 s with a cold cache).
            ok, last = _probe(self.uri, min(max(deadline - time.monotonic(), 1),
                                            PROBE_ATTEMPT_S))
            if ok:
                return self
            time.sleep(0.2)
        raise HostSetupError(f"libvirtd of {self.name} did not answer on {self.uri} within "
                             f"{timeout}s ({last}): {self.output()}")

    def output(self):
        text = ""
        for path in (os.path.join(self.root, "libvirtd.out"), self.log_path):
            try:
                with open(path) as f:
                    text += f.read()[-2000:]
            except OSError:
                pass
        return text

    def connect(self):
        import libvirt

        return libvirt.open(self.uri)

    def domains(self):
        """{uuid: active?} of every domain this daemon knows."""
        conn = self.connect()
        try:
            return {d.UUIDString(): bool(d.isActive()) for d in conn.listAllDomains()}
        finally:
            conn.close()

    def _destroy_domains(self):
        import libvirt

        try:
            conn = self.connect()
        except libvirt.libvirtError:
            return
        try:
            for dom in conn.listAllDomains():
                try:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()

    def _namespace_pids(self):
        """Processes in the daemon's own mount namespace, never in ours."""
        pids = []
        if not self.mnt_ns or self.mnt_ns == os.readlink("/proc/self/ns/mnt"):
            return pids
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.mnt_ns:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def stop(self):
        """Destroy every domain, stop libvirtd and whatever still runs in its namespace."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._destroy_domains()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # QEMU processes outlive libvirtd; they are the only others in its namespace.
        for pid in self._namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self._namespace_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._out.close()
        self.proc = None


def start_hosts(root, count=2, timeout=90, netns=None, addresses=None, first_index=0):
    """Start ``count`` hosts under ``root`` in parallel; stop them all if one fails.

    ``netns``/``addresses``: per host, the network namespace to run in and the
    address to listen on there (reachable from this namespace).
    ``first_index``: hosts are host<first_index>... - daemons that run at the
    same time as others need indexes of their own (capabilities cache,
    migration ports).
    """
    check_prerequisites()
    quiet_libvirt()
    hosts = [LibvirtHost(root, first_index + i, netns=(netns or [None] * count)[i],
                         address=(addresses or ["127.0.0.1"] * count)[i])
             for i in range(count)]
    try:
        for h in hosts:
            h.start()
        for h in hosts:
            h.wait_ready(timeout)
    except BaseException:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts):
    for h in hosts:
        h.stop()


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
