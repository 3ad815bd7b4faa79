"""Helpers for the disk and disk-transfer tests.

:class:`SshServer` (the session fixture ``sshd`` in conftest.py) is a real
OpenSSH server on a free 127.0.0.1 port, with its own host key, configuration,
authorized_keys and pid file in a temporary directory; it authorizes a fresh
client key for the current user, prepares a known_hosts file with
ssh-keyscan, and is stopped at the end of the session. The "destination host"
is this machine reached through that server.

The tools come from Debian's openssh-server, openssh-client, rsync and
qemu-utils (tools/ensure-ssh.sh installs them; `make test` runs it). In CI
(CI=true) a missing tool is installed by running that script, and a failure is
a test failure, never a skip; elsewhere the tests are skipped with the reason.
"""

import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from godwit import conf as godwit_conf

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENSURE_SSH = ROOT / "tools" / "ensure-ssh.sh"
TOOLS = ("sshd", "ssh", "scp", "ssh-keygen", "ssh-keyscan", "rsync", "qemu-img", "qemu-io")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def _missing_tools():
    return [t for t in TOOLS if shutil.which(t, path=SEARCH_PATH) is None]


def require_tools():
    """Make sure every tool is there: install it in CI, else skip."""
    missing = _missing_tools()
    if not missing:
        return
    message = (f"missing {', '.join(missing)}; run tools/ensure-ssh.sh (installs "
               "openssh-server, rsync, qemu-utils)")
    if not in_ci():
        pytest.skip(message)
    proc = subprocess.run([str(ENSURE_SSH)], capture_output=True, text=True, timeout=600)
    missing = _missing_tools()
    if proc.returncode or missing:
        pytest.fail(f"{message}; running it failed (exit {proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}")


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
    conf = godwit_conf.new_conf()
    conf([], project="godwit-test", default_config_files=[], default_config_dirs=[])
    conf.set_override("driver", driver, group="transfer")
    for key, value in transfer.items():
        conf.set_override(key, value, group="transfer")
    return conf


class SshServer:
    """A running test sshd, and the client side settings to reach it."""

    host = "127.0.0.1"

    def __init__(self, root):
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
                                             stderr=subprocess.STDOUT)
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def qemu_io(path, command, fmt="qcow2", read_only=False):
    """Run one qemu-io command; fail the test with its output if it fails."""
    args = [tool("qemu-io"), "-f", fmt, *(["-r"] if read_only else []), "-c", command,
            str(path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "verification failed" not in proc.stdout, (
        f"qemu-io {command!r} on {path} failed (exit {proc.returncode}):\n"
        f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def qemu_img_compare(a, b, fmt_a="qcow2", fmt_b="qcow2"):
    """Whether two images hold the same guest-visible data."""
    proc = subprocess.run([tool("qemu-img"), "compare", "-f", fmt_a, "-F", fmt_b, str(a),
                           str(b)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def allocated(path):
    """Bytes the file occupies on disk (du), as opposed to its apparent size."""
    return os.stat(path).st_blocks * 512
