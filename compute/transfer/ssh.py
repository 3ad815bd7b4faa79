"""Transfer to another compute host over SSH: rsync or scp, plus ssh commands.

What operators set up (docs/cold-migration-transfer.md): a key pair for the
service user, its public key in authorized_keys on every compute host, and
the hosts' keys known (known_hosts, or ``[transfer] ssh_known_hosts_file``
with ``StrictHostKeyChecking=accept-new``). Every ssh runs with
``BatchMode=yes``: it never prompts for a password, a passphrase or an
unknown host key, it fails instead, and the failure is raised as
:class:`godwit.exception.TransferFailed` with ssh's stderr and a hint.

No shell runs on this side: every command is an argument list. The remote
side does parse what it gets (ssh hands ``mkdir -p -- <path>`` to the peer's
login shell, rsync starts its server the same way), which is why hosts and
remote paths are checked against strict patterns first (see
:mod:`compute.transfer.base`).
"""

import os
import re
import subprocess

from oslo_log import log as logging

from compute.transfer import base
from godwit import exception

LOG = logging.getLogger(__name__)

# Values that go into rsync's -e string: rsync splits that string itself, on
# whitespace, honouring quotes, so every part must be a plain token.
_SAFE_TOKEN_RE = re.compile(r"[A-Za-z0-9_./=+:@,-]+")
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_LOCAL_FILE_RE = re.compile(r"/[A-Za-z0-9_./+-]+")

PACKAGES = {"ssh": "openssh-client", "scp": "openssh-client", "rsync": "rsync"}

# Seconds for a short remote command (mkdir, rm, test, mv) beyond the
# connect timeout. Copies have no overall limit (disks can be huge); a dead
# peer is detected by ServerAlive* below instead.
COMMAND_TIMEOUT = 300
STDERR_LINES = 8
STDERR_CHARS = 1500

# Known ssh/rsync messages and what to do about them.
_HINTS = (
    (("Connection refused", "Connection timed out", "No route to host",
      "Could not resolve hostname", "Network is unreachable", "Operation timed out"),
     "cannot reach sshd on {host} port {port}: check the host name, that sshd runs there "
     "and that [transfer] ssh_port is its port."),
    (("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
      "No ED25519 host key is known", "host key is known"),
     "the host key of {host} is unknown or has changed: add it to known_hosts "
     "(ssh-keyscan), or set [transfer] ssh_known_hosts_file to accept new hosts; a "
     "changed key needs an operator to find out why."),
    (("Permission denied (publickey",),
     "sshd on {host} refused the login: put the public key of {key} into "
     "{user}'s authorized_keys on {host}."),
    (("rsync: command not found", "rsync: not found"),
     "install rsync on {host} too: rsync runs on both ends."),
)


def _tail(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "\n".join(lines[-STDERR_LINES:])[-STDERR_CHARS:] or "(no output)"


class _SshTransfer(base.TransferDriver):
    """What rsync and scp share: options, ssh commands, error reporting."""

    def __init__(self, conf):
        super().__init__(conf)
        opts = conf.transfer
        self.user = opts.ssh_user or ""
        if self.user and not _USER_RE.fullmatch(self.user):
            raise exception.InvalidTransferConfig(
                option="ssh_user", value=self.user,
                reason="a user name is a letter or '_' followed by up to 31 letters, "
                       "digits or '_.-'")
        self.port = int(opts.ssh_port)
        if not 0 < self.port < 65536:
            raise exception.InvalidTransferConfig(option="ssh_port", value=self.port,
                                                  reason="a TCP port is 1-65535")
        self.connect_timeout = int(opts.ssh_connect_timeout)
        self.key_file = self._local_file("ssh_key_file", opts.ssh_key_file)
        self.known_hosts_file = self._local_file("ssh_known_hosts_file",
                                                 opts.ssh_known_hosts_file, must_exist=False)
        self.bandwidth_limit_kbps = int(opts.bandwidth_limit_kbps)
        self.ssh_options = self._ssh_options()

    @staticmethod
    def _local_file(option, value, must_exist=True):
        if not value:
            return ""
        path = os.path.expanduser(value)
        if not _LOCAL_FILE_RE.fullmatch(path):
            # It goes into rsync's -e string, which rsync splits on spaces.
            raise exception.InvalidTransferConfig(
                option=option, value=value,
                reason="give an absolute path of letters, digits and '_./+-' only")
        if must_exist and not os.path.isfile(path):
            raise exception.InvalidTransferConfig(option=option, value=value,
                                                  reason="no such file")
        return path

    def _ssh_options(self):
        """ssh options common to ssh, scp and rsync's ``-e`` (port excluded:
        scp spells it ``-P``)."""
        opts = ["-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                # A peer that dies mid-copy ends the copy within a minute.
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                # Keep stderr to errors (no "Permanently added ..." warnings),
                # so TransferFailed shows what went wrong.
                "-o", "LogLevel=ERROR"]
        if self.key_file:
            opts += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts_file:
            # Our own known_hosts file: the first connection to a host records
            # its key (trust on first use), later connections must present the
            # same key - a changed key fails ("Host key verification failed").
            # Without the option ssh uses ~/.ssh/known_hosts and
            # /etc/ssh/ssh_known_hosts and, in batch mode, refuses unknown hosts.
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts_file}",
                     "-o", "StrictHostKeyChecking=accept-new"]
        return opts

    # --- helpers ---------------------------------------------------------------

    def _login(self, host):
        """``user@host`` for ssh (IPv6 without brackets)."""
        return f"{self.user}@{host}" if self.user else host

    def _remote_spec(self, host, path):
        """``user@host:path`` for rsync and scp (IPv6 in brackets)."""
        shown = f"[{host}]" if base.is_ipv6(host) else host
        return f"{self.user}@{shown}:{path}" if self.user else f"{shown}:{path}"

    def _ssh_argv(self, host, *remote_cmd):
        return ["ssh", "-p", str(self.port), *self.ssh_options, "--", self._login(host),
                *remote_cmd]

    def _run(self, cmd, action, host, timeout=None):
        """Run ``cmd``; return the CompletedProcess (any exit code).

        :raises TransferToolNotFound: the program is not installed.
        :raises TransferFailed: it did not finish within ``timeout``.
        """
        LOG.debug("Running %s", cmd)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, LC_ALL="C"))
        except FileNotFoundError as e:
            raise exception.TransferToolNotFound(
                tool=cmd[0], package=PACKAGES.get(cmd[0], cmd[0])) from e
        except subprocess.TimeoutExpired as e:
            raise exception.TransferFailed(
                action=action, code="none (killed)",
                stderr=_tail(e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr),
                hint=f"no result after {timeout} s; is {host} overloaded or hung?",
                host=host) from e

    def _failed(self, proc, action, host):
        stderr = _tail(proc.stderr)
        hint = ""
        for needles, text in _HINTS:
            if any(n in proc.stderr for n in needles):
                hint = text
                break
        if not hint and proc.returncode == 255:
            hint = "ssh could not connect to {host} port {port} or log in."
        hint = hint.format(host=host, port=self.port,
                           user=self.user or "the service user",
                           key=self.key_file or "the service user's ssh key")
        return exception.TransferFailed(action=action, code=proc.returncode, stderr=stderr,
                                        hint=hint, host=host)

    def _ssh(self, host, action, *remote_cmd, ok=(0,)):
        cmd = self._ssh_argv(host, *remote_cmd)
        proc = self._run(cmd, action, host, timeout=self.connect_timeout + COMMAND_TIMEOUT)
        if proc.returncode not in ok:
            raise self._failed(proc, action, host)
        return proc.returncode

    def _where(self, host, path=""):
        return f"{self._login(host)}{':' + path if path else ''} (port {self.port})"

    # --- TransferDriver --------------------------------------------------------

    def make_dir(self, dest_host, path):
        host = base.validate_host(dest_host)
        base.validate_remote_path(path)
        self._ssh(host, f"ssh mkdir -p {self._where(host, path)}", "mkdir", "-p", "--", path)

    def remove(self, dest_host, path):
        host = base.validate_host(dest_host)
        base.validate_removable(path)
        self._ssh(host, f"ssh rm -rf {self._where(host, path)}", "rm", "-rf", "--", path)

    def exists(self, dest_host, path):
        host = base.validate_host(dest_host)
        base.validate_remote_path(path)
        code = self._ssh(host, f"ssh test -e {self._where(host, path)}",
                         "test", "-e", path, ok=(0, 1))
        return code == 0


class RsyncTransfer(_SshTransfer):
    """``[transfer] driver = rsync``: ``rsync -a <rsync_options> -e "ssh ..."``.

    rsync writes into a temporary file beside the destination and renames it
    when complete (unless ``--inplace`` is added to ``rsync_options``), keeps
    holes with ``--sparse`` (the default options), and needs rsync installed
    on both hosts.
    """

    name = "rsync"

    def __init__(self, conf):
        super().__init__(conf)
        self.rsync_options = list(conf.transfer.rsync_options or [])
        for opt in self.rsync_options:
            if not opt.startswith("-") or opt.split("=", 1)[0] in ("-e", "--rsh"):
                raise exception.InvalidTransferConfig(
                    option="rsync_options", value=opt,
                    reason="each entry must be an rsync option ('--...'); the remote shell "
                           "(-e/--rsh) is built from the ssh_* options")
        # rsync splits the -e string on whitespace (and honours quotes). It is
        # built only from fixed words and values checked here against
        # _SAFE_TOKEN_RE (ints, the validated key/known_hosts paths), so no
        # configured value can add, split or quote a word.
        parts = ["ssh", "-p", str(self.port), *self.ssh_options]
        for part in parts:
            if not _SAFE_TOKEN_RE.fullmatch(part):  # defence in depth
                raise exception.InvalidTransferConfig(
                    option="ssh_*", value=part,
                    reason="not usable in rsync's -e string (spaces or quotes)")
        self.rsh = " ".join(parts)

    def copy_to(self, local_path, dest_host, dest_path):
        host = base.validate_host(dest_host)
        base.validate_remote_path(dest_path)
        src = base.validate_local_source(local_path)
        cmd = ["rsync", "-a", *self.rsync_options]
        if self.bandwidth_limit_kbps:
            cmd.append(f"--bwlimit={self.bandwidth_limit_kbps}")  # KiB/s, like ours
        cmd += ["-e", self.rsh, "--", src, self._remote_spec(host, dest_path)]
        action = f"rsync {src} -> {self._where(host, dest_path)}"
        proc = self._run(cmd, action, host)
        if proc.returncode:
            raise self._failed(proc, action, host)
        LOG.info("Copied %s to %s:%s with rsync", src, host, dest_path)


class ScpTransfer(_SshTransfer):
    """``[transfer] driver = scp``: ``scp -P PORT -o BatchMode=yes ... src user@host:dest``.

    Only needs sshd (with its sftp subsystem: OpenSSH >= 9 scp speaks SFTP) on
    the destination, but writes holes as zeros: a sparse image becomes fully
    allocated there. The copy goes to ``<dest>.part`` and is renamed over
    ``dest`` with ``mv`` once complete.
    """

    name = "scp"

    def copy_to(self, local_path, dest_host, dest_path):
        host = base.validate_host(dest_host)
        base.validate_remote_path(dest_path)
        src = base.validate_local_source(local_path)
        tmp = dest_path + ".part"
        # No -q: it would also silence ssh's own errors ("Connection refused").
        # scp shows no progress meter when stdout is not a terminal.
        cmd = ["scp", "-p", "-P", str(self.port), *self.ssh_options]
        if self.bandwidth_limit_kbps:
            # scp's -l is in Kbit/s (1024 bit); ours is KiB/s.
            cmd += ["-l", str(self.bandwidth_limit_kbps * 8)]
        cmd += ["--", src, self._remote_spec(host, tmp)]
        action = f"scp {src} -> {self._where(host, dest_path)}"
        proc = self._run(cmd, action, host)
        if proc.returncode:
            error = self._failed(proc, action, host)
            if proc.returncode != 255:  # ssh itself worked: clean up the part file
                try:
                    self._ssh(host, f"ssh rm -f {self._where(host, tmp)}", "rm", "-f", "--",
                              tmp)
                except exception.TransferError:
                    LOG.warning("Could not remove %s on %s after a failed copy", tmp, host)
            raise error
        self._ssh(host, f"ssh mv {self._where(host, tmp)} -> {dest_path}",
                  "mv", "-f", "--", tmp, dest_path)
        LOG.info("Copied %s to %s:%s with scp", src, host, dest_path)
