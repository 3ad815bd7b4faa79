"""Checks for values that go into a URI, a command line or a file path.

Host names reach libvirt URIs (``qemu+ssh://<host>/system``, whose transport
starts ``ssh <host>``), ssh/rsync/scp command lines and the remote shell they
start; instance ids become directory names that are created and removed. A
value that is not what it claims to be could become an ssh option
(``-oProxyCommand=...``), a second shell command (``a;b``) or a path outside
the instances directory (``../x``). Commands are argument lists (no local
shell), and in addition these values are checked here, before any URI,
command or path is built from them, so a hostile value fails with a clear
error and nothing runs.
"""

import ipaddress
import os
import re
import urllib.parse

from godwit import exception

MAX_HOSTNAME = 253
# RFC 1123: labels of letters, digits and '-', not starting or ending with '-',
# 1-63 characters, separated by single dots.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
_URI_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
# libvirt's remote transports for a peer's libvirtd. No query string: ssh and
# libssh URIs take ?command=, ?netcat=, ?socket=... which name what runs on
# the peer; a peer's URI comes over RPC and must not choose that.
LIBVIRT_PEER_SCHEMES = ("qemu+tcp", "qemu+tls", "qemu+ssh", "qemu+libssh", "qemu+libssh2",
                        "qemu")
LIBVIRT_PEER_PATHS = ("/system", "/session")


def _refuse(value, reason):
    raise exception.InvalidHostName(host=value, reason=reason)


def host(value):
    """A host name or address, in canonical form (IPv6 without brackets).

    Accepts an RFC 1123 host name (which includes IPv4 dotted quads), or an
    IPv6 address with or without brackets and with an optional zone
    (``fe80::1%eth0``).

    :raises InvalidHostName: anything else - empty, not a string, a leading
        '-' (``-oProxyCommand=x``), spaces, ``;``, ``/``, ``..``, ``@``,
        ``:port``, longer than 253 characters or a label longer than 63.
    """
    if not isinstance(value, str) or not value:
        _refuse(value, "it is empty or not a string")
    if len(value) > MAX_HOSTNAME + 2:
        _refuse(value[:80] + "...", f"it is longer than {MAX_HOSTNAME} characters")
    if value.startswith("-"):
        _refuse(value, "it starts with '-', which a command would read as an option")
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in candidate:
        addr, _, zone = candidate.partition("%")
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            _refuse(value, "it contains ':' but is not an IPv6 address (a port does not "
                           "belong in a host name)")
        if "%" in candidate and not _ZONE_RE.fullmatch(zone):
            _refuse(value, "its IPv6 zone has characters other than letters, digits and "
                           "'_.-'")
        return candidate
    if candidate is not value:
        _refuse(value, "only IPv6 addresses go in brackets")
    if len(value) > MAX_HOSTNAME:
        _refuse(value[:80] + "...", f"it is longer than {MAX_HOSTNAME} characters")
    if not _HOSTNAME_RE.fullmatch(value):
        _refuse(value, "a host name is labels of letters, digits and '-' (not at either "
                       "end of a label, at most 63 characters each) separated by '.'")
    return value


def uri_host(value):
    """:func:`host`, as written in a URI (IPv6 in brackets, its zone %25-escaped)."""
    checked = host(value)
    if ":" in checked:
        return "[" + checked.replace("%", "%25") + "]"
    return checked


def uuid(value, what="instance uuid"):
    """A uuid in its canonical 8-4-4-4-12 hex form (what ids are here).

    :raises InvalidUUID: anything else (``../x``, ``a/b``, ``{...}``, ``urn:uuid:...``).
    """
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise exception.InvalidUUID(what=what, value=value)
    return value


def instance_dir(base_path, instance_uuid, suffix=""):
    """``<base_path>/<instance uuid><suffix>``, from a checked uuid only, so the
    path stays inside ``base_path``."""
    return os.path.join(base_path, uuid(instance_uuid) + suffix)


def libvirt_peer_uri(value):
    """A libvirt URI of another host's libvirtd, as a destination advertises it.

    ``qemu+<transport>://[user@]<host>[:port]/system`` with a host that
    :func:`host` accepts and no query string or fragment.

    :raises InvalidHostName: a bad host.
    :raises MigrationPreCheckError: another scheme or path, or a query string.
    """
    if not isinstance(value, str):
        raise exception.MigrationPreCheckError(reason=f"peer URI {value!r} is not a string")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise exception.MigrationPreCheckError(
            reason=f"peer URI {value!r} cannot be parsed: {e}") from None
    problem = None
    if parts.scheme not in LIBVIRT_PEER_SCHEMES:
        problem = f"its scheme is not one of {', '.join(LIBVIRT_PEER_SCHEMES)}"
    elif parts.path not in LIBVIRT_PEER_PATHS:
        problem = f"its path is not one of {', '.join(LIBVIRT_PEER_PATHS)}"
    elif parts.query or parts.fragment or "?" in value or "#" in value:
        problem = "it has a query string or fragment (these name commands for the peer)"
    elif parts.password is not None or (parts.username is not None and
                                        not _URI_USER_RE.fullmatch(parts.username)):
        problem = "its user part is not a plain user name"
    elif not parts.hostname:
        problem = "it names no host"
    if problem:
        raise exception.MigrationPreCheckError(
            reason=f"refusing libvirt peer URI {value!r}: {problem}")
    host(urllib.parse.unquote(parts.hostname))
    return value
