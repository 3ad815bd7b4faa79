"""A real test sshd on 127.0.0.1, for the tests and the benchmark.

:class:`SshServer` is an OpenSSH server on a free 127.0.0.1 port, with its own
host key, configuration, authorized_keys and pid file in a directory of its
own; it authorizes a fresh client key for the current user and prepares a
known_hosts file with ssh-keyscan. The "destination host" of a transfer is
this machine reached through that server.

Used by ``tests/transfer`` (session fixture ``sshd``), ``tests/real``
(test_libvirt_cold.py) and ``bench/cold_transfer.py``:

* :func:`running_sshd` - a context manager for anything (the bench);
* :func:`sshd_fixture` - the body of a pytest fixture: in CI (CI=true) a
  missing tool is installed with tools/ensure-ssh.sh and a failure fails the
  test; elsewhere the test is skipped with the reason.

The tools come from Debian's openssh-server, openssh-client, rsync and
qemu-utils (tools/ensure-ssh.sh installs them; `make test` and `make bench`
run it).
"""

import contextlib
import ctypes
import getpass
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENSURE_SSH = ROOT / "tools" / "ensure-ssh.sh"
TOOLS = ("sshd", "ssh", "scp", "ssh-keygen", "ssh-keyscan", "rsync", "qemu-img", "qemu-io")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class SshUnavailable(Exception):
    """The test sshd cannot run here; the message says why."""


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def missing_tools():
    return [t for t in TOOLS if shutil.which(t, path=SEARCH_PATH) is None]


def ensure_tools(install=False):
    """Raise SshUnavailable naming what is missing; with ``install``, first run
    tools/ensure-ssh.sh to install it."""
    missing = missing_tools()
    if not missing:
        return
    message = (f"missing {', '.join(missing)}; run tools/ensure-ssh.sh (installs "
               "openssh-server, rsync, qemu-utils)")
    if not install:
        raise SshUnavailable(message)
    proc = subprocess.run([str(ENSURE_SSH)], capture_output=True, text=True, timeout=600)
    if proc.returncode or missing_tools():
        raise SshUnavailable(f"{message}; running it failed (exit {proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")


def require_tools():
    """In a test: make sure every tool is there - installed in CI, else skip."""
    import pytest

    try:
        ensure_tools(install=in_ci())
    except SshUnavailable as e:
        if in_ci():
            pytest.fail(str(e))
        pytest.skip(str(e))


def tool(name):
    return shutil.which(name, path=SEARCH_PATH)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_conf(driver="rsync", **transfer):
    """Godwit's configuration with ``[transfer]`` options set."""
    from godwit import conf as godwit_conf

    conf = godwit_conf.new_conf()
    conf([], project="godwit-test", default_config_files=[], default_config_dirs=[])
    conf.set_override("driver", driver, group="transfer")
    for key, value in transfer.items():
        conf.set_override(key, value, group="transfer")
    return conf


def _die_with_parent():
    """In the child before exec: SIGTERM it if the process that started it dies
    without stopping it (a killed test run or bench)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SshServer:
    """A running test sshd, and the client side settings to reach it."""

    host = "127.0.0.1"

    def __init__(self, root):
        root = pathlib.Path(root)
        self.root = root
        self.user = getpass.getuser()
        self.host_key = root / "ssh_host_ed25519_key"
        self.client_key = root / "client_key"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.log = root / "sshd.log"
        self.port = None
        self.proc = None

    def transfer_opts(self, **overrides):
        """Godwit's ``[transfer]`` options to reach this server."""
        opts = {"ssh_user": self.user, "ssh_port": self.port,
                "ssh_key_file": str(self.client_key),
                "ssh_known_hosts_file": str(self.known_hosts), "ssh_connect_timeout": 5}
        opts.update(overrides)
        return opts

    def conf(self, driver="rsync", **overrides):
        return make_conf(driver, **self.transfer_opts(**overrides))

    def start(self):
        keygen = tool("ssh-keygen")
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "godwit-test",
                            "-f", str(key)], check=True, capture_output=True, timeout=30)
        # "restrict" (no forwarding, no pty, no ~/.ssh/rc), as the operators'
        # documentation recommends: everything the drivers do still works.
        self.authorized_keys.write_text(
            "restrict " + pathlib.Path(f"{self.client_key}.pub").read_text())
        try:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        except OSError:
            pass  # not root: sshd runs without privilege separation
        sshd = tool("sshd")  # absolute: sshd re-executes itself
        for _attempt in range(5):
            self.port = free_port()
            self.config.write_text("\n".join([
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}",
                f"PidFile {self.root / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                # OpenSSH >= 9 scp speaks SFTP; built in, no helper path needed.
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]))
            check = subprocess.run([sshd, "-t", "-f", str(self.config)],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode:
                raise RuntimeError(f"sshd -t rejects the test configuration: {check.stderr}")
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([sshd, "-f", str(self.config), "-D", "-e"],
                                             stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT,
                                             preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if port_open(self.port):
                    break
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            if self.proc.poll() is None and port_open(self.port):
                break
            self.stop()
            if "Address already in use" not in self.log.read_text():
                raise RuntimeError(f"sshd did not start:\n{self.log.read_text()[-2000:]}")
        else:
            raise RuntimeError(f"sshd found no free port:\n{self.log.read_text()[-2000:]}")
        scan = subprocess.run([tool("ssh-keyscan"), "-p", str(self.port), "-t", "ed25519",
                               self.host], capture_output=True, text=True, timeout=30)
        if scan.returncode or not scan.stdout.strip():
            self.stop()
            raise RuntimeError(f"ssh-keyscan failed: {scan.stderr}")
        self.known_hosts.write_text(scan.stdout)
        return self

    def stop(self):
        """Stop the listening sshd (the per-connection children end with their
        connections)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def start_sshd(root):
    """A started :class:`SshServer` in ``root``; SshUnavailable if it cannot run."""
    ensure_tools()
    os.makedirs(root, exist_ok=True)
    server = SshServer(root)
    try:
        return server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        server.stop()
        raise SshUnavailable(f"cannot start the test sshd: {e}") from e


@contextlib.contextmanager
def running_sshd(root):
    """``with running_sshd(dir) as server:`` - stopped on the way out, also on failure."""
    server = start_sshd(root)
    try:
        yield server
    finally:
        server.stop()


def sshd_fixture(tmp_path_factory):
    """The body of an ``sshd`` pytest fixture (``yield from sshd_fixture(...)``)."""
    import pytest

    require_tools()
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SshUnavailable as e:
        if in_ci():
            pytest.fail(str(e))
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()
