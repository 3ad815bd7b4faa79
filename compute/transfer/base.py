"""The transfer driver interface, and the checks every driver applies first.

Host names and destination paths reach ``ssh``, ``rsync`` and ``scp`` command
lines, and the remote side runs ``mkdir``/``rm``/``test`` and rsync's server
through the peer's login shell, which parses what it is given. Rather than
quote for a shell we do not control, only values that need no quoting are
accepted, and they are checked before any process starts:

- a host is a DNS name (RFC 1123 labels), an IPv4 address or an IPv6 literal
  (optionally in brackets) - so it never starts with ``-`` (which ssh would
  read as an option such as ``-oProxyCommand=...``) and holds no space, quote,
  ``;``, ``$``, ``@`` or ``:``;
- a destination path matches ``^/[A-Za-z0-9._/-]+$`` and has no ``..``
  segment.

Every driver applies the same rules, ``local`` included, so that a call that
works with one driver works with the others.
"""

import abc
import os
import re

from godwit import exception, validate

# The remote shell parses these paths: letters, digits and . _ / - only.
# (re.fullmatch, not "$": "$" would also accept a trailing newline.)
REMOTE_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]+")
MAX_PATH = 4096


def validate_host(host):
    """Check a destination host name and return it in canonical form.

    :param host: a DNS name, an IPv4 address, or an IPv6 literal with or
        without brackets (``::1``, ``[::1]``, ``fe80::1%eth0``).
    :returns: the host, without brackets.
    :raises InvalidTransferHost: anything else, e.g. ``-oProxyCommand=x``,
        ``a b``, ``h;rm``, ``user@host``, ``host:22`` or an empty string.
    """
    # The rules are godwit.validate's, shared with libvirt URIs and paths; the
    # error stays a TransferError so a failed transfer reads as one.
    try:
        return validate.host(host)
    except exception.InvalidHostName as e:
        raise exception.InvalidTransferHost(host=host, reason=e.kwargs["reason"]) from None


def is_ipv6(host):
    """Whether a validated host is an IPv6 literal (scp/rsync need brackets)."""
    return ":" in host


def validate_remote_path(path):
    """Check a path on the destination host.

    :param path: an absolute path of letters, digits and ``. _ / -``.
    :returns: ``path``.
    :raises InvalidTransferPath: relative, other characters (spaces, quotes,
        ``$``, ``;``, newlines ...), a ``..`` segment, or too long.
    """
    if not isinstance(path, str):
        raise exception.InvalidTransferPath(path=path, reason="it is not a string")
    if len(path) > MAX_PATH or not REMOTE_PATH_RE.fullmatch(path):
        raise exception.InvalidTransferPath(
            path=path, reason="only absolute paths made of letters, digits and '._/-' are "
                              "accepted, because the destination's shell parses them")
    if ".." in path.split("/"):
        raise exception.InvalidTransferPath(path=path,
                                            reason="'..' segments are not allowed")
    return path


def validate_removable(path):
    """:func:`validate_remote_path`, and not ``/`` or a top-level directory.

    :raises InvalidTransferPath: the path is invalid or has fewer than two
        components (``/var``, ``/etc/``), a safety net against removing a
        system directory after a caller's mistake.
    """
    validate_remote_path(path)
    if len([p for p in path.split("/") if p not in ("", ".")]) < 2:
        raise exception.InvalidTransferPath(
            path=path, reason="refusing to remove a top-level directory")
    return path


def validate_local_source(path):
    """Check the local file to copy and return its absolute path.

    The absolute form starts with ``/``, so rsync and scp can read it neither
    as an option nor as ``host:path``.

    :raises InvalidTransferPath: it is not an existing regular file.
    """
    try:
        path = os.path.abspath(os.fspath(path))
    except TypeError:
        raise exception.InvalidTransferPath(path=path, reason="it is not a path") from None
    if not os.path.isfile(path):
        raise exception.InvalidTransferPath(
            path=path, reason="the local source is not an existing regular file")
    return path


class TransferDriver(abc.ABC):
    """Copies files to, and manages paths on, another compute host.

    Implementations: :class:`compute.transfer.local.LocalTransfer` (shared
    instance path or same machine), :class:`compute.transfer.ssh.RsyncTransfer`
    and :class:`compute.transfer.ssh.ScpTransfer`. Every method checks its
    arguments (see this module's docstring) before it starts any process, and
    raises :class:`godwit.exception.InvalidTransferHost` or
    :class:`godwit.exception.InvalidTransferPath` for a refused value.
    """

    #: entry point name in godwit.transfer_drivers
    name = None

    def __init__(self, conf):
        """:param conf: Godwit's ConfigOpts; drivers read the ``[transfer]`` group.

        :raises InvalidTransferConfig: an option cannot be used.
        """
        self.conf = conf

    @abc.abstractmethod
    def copy_to(self, local_path, dest_host, dest_path):
        """Copy one local file to ``dest_path`` on ``dest_host``.

        The destination's directory must exist (:meth:`make_dir`). An existing
        file at ``dest_path`` is replaced; the file appears under its final
        name only once complete. Holes in sparse images stay holes where the
        tool can do it (``local``, ``rsync --sparse``; not ``scp``).

        :param local_path: the file to copy (a disk image, flattened first).
        :param dest_host: the destination compute host.
        :param dest_path: absolute path of the copy on ``dest_host``.
        :raises InvalidTransferHost: ``dest_host`` is not acceptable.
        :raises InvalidTransferPath: ``dest_path`` is not acceptable, or
            ``local_path`` is not an existing regular file.
        :raises TransferToolNotFound: the copy tool is not installed.
        :raises TransferFailed: the copy failed (exit code and stderr tail).
        """

    @abc.abstractmethod
    def make_dir(self, dest_host, path):
        """Create directory ``path`` and its parents on ``dest_host`` (``mkdir -p``).

        :param dest_host: the destination compute host.
        :param path: absolute directory path; already existing is fine.
        :raises InvalidTransferHost: ``dest_host`` is not acceptable.
        :raises InvalidTransferPath: ``path`` is not acceptable.
        :raises TransferToolNotFound: ssh is not installed.
        :raises TransferFailed: the directory could not be created.
        """

    @abc.abstractmethod
    def remove(self, dest_host, path):
        """Remove ``path`` on ``dest_host``, recursively (``rm -rf``).

        Quiet if ``path`` does not exist (rollback and cleanup call it
        blindly).

        :param dest_host: the destination compute host.
        :param path: absolute path with at least two components.
        :raises InvalidTransferHost: ``dest_host`` is not acceptable.
        :raises InvalidTransferPath: ``path`` is not acceptable or top-level.
        :raises TransferToolNotFound: ssh is not installed.
        :raises TransferFailed: the removal failed.
        """

    @abc.abstractmethod
    def exists(self, dest_host, path):
        """Whether ``path`` exists on ``dest_host`` (``test -e``).

        :param dest_host: the destination compute host.
        :param path: absolute path.
        :returns: ``True`` or ``False``.
        :raises InvalidTransferHost: ``dest_host`` is not acceptable.
        :raises InvalidTransferPath: ``path`` is not acceptable.
        :raises TransferToolNotFound: ssh is not installed.
        :raises TransferFailed: the host could not be asked (ssh failed).
        """
