"""Rolling upgrades: how far each service may go in what it sends to the others.

Each RPC interface (compute, conductor) keeps its version history in its
client module (``HISTORY``: every version this release serves, oldest
first). ``[upgrade_levels] compute`` and ``conductor`` cap what a service
sends to that interface:

- unset: the newest this release knows;
- a version of the history (``2.0``): that, until the option is removed;
- ``auto``: the oldest RPC version recorded in the services table for the
  services of that interface that are up (every record of it when none is
  up; a record without a version, from a release before versions were
  recorded, counts as the oldest version served). Services with the
  database (conductors, APIs) read it when they start, again when a sender
  asks whether it may send a newer call and the last read is older than
  ``REFRESH_AFTER`` seconds, and a conductor at once whenever an agent
  registers with it; agents, which have no database, learn it from the
  conductor's answer when they register (docs/upgrades.md,
  docs/decisions.md).

Anything else is refused when the service starts (:func:`check_levels`).
"""

import threading
import time

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

AUTO = "auto"
#: Seconds an ``auto`` cap read from the services table is trusted before a
#: sender that asks about a newer call reads it again.
REFRESH_AFTER = 30.0


def parse(version):
    """"2.10" -> (2, 10), for ordering (as strings "2.10" < "2.9")."""
    major, minor = version.split(".")
    return int(major), int(minor)


class InvalidUpgradeLevel(ValueError):
    pass


class Interface:
    """One RPC interface: its option's name, the services that serve it (their
    ``binary`` in the services table) and its version history."""

    def __init__(self, name, binary, history):
        self.name = name
        self.binary = binary
        self.history = tuple(history)

    @property
    def newest(self):
        return self.history[-1]

    @property
    def oldest(self):
        return self.history[0]

    def older(self):
        """Every version still served but older than the newest, oldest first:
        the agents (or conductors) of an earlier release this one still talks to."""
        return self.history[:-1]

    def __repr__(self):
        return f"<{self.name} RPC {', '.join(self.history)}>"


def interfaces():
    """compute and conductor (imported here: their client modules import this one)."""
    from compute import rpcapi as compute_rpcapi
    from conductor import rpcapi as conductor_rpcapi
    return compute_rpcapi.INTERFACE, conductor_rpcapi.INTERFACE


def check_level(interface, value):
    """``value`` if ``[upgrade_levels] <interface>`` may be it, else
    InvalidUpgradeLevel saying what is allowed."""
    if value is None or value == AUTO or value in interface.history:
        return value
    raise InvalidUpgradeLevel(
        f"[upgrade_levels] {interface.name} = {value!r} is not allowed: give 'auto' (the "
        f"oldest {interface.name} RPC version among the running {interface.name} services), "
        f"one of the {interface.name} RPC versions this release serves "
        f"({', '.join(interface.history)}), or leave it unset for the newest "
        f"({interface.newest})")


def check_levels(conf):
    """Every ``[upgrade_levels]`` option, at start-up (godwit.cmd.common.init)."""
    for interface in interfaces():
        check_level(interface, getattr(conf.upgrade_levels, interface.name))


def oldest(interface, versions):
    """The cap ``auto`` gives for the versions recorded by the services that
    count: the oldest of them. None (a service of a release that did not
    record its RPC version) counts as the oldest version served; a version
    newer than this release knows counts as its newest; with no service at
    all, the newest (nothing older runs)."""
    if not versions:
        return interface.newest
    low, high = parse(interface.oldest), parse(interface.newest)
    found = []
    for v in versions:
        try:
            p = parse(v) if v is not None else low
        except ValueError:
            LOG.warning("A %s service records RPC version %r, which is not a version; "
                        "taken as %s", interface.name, v, interface.oldest)
            p = low
        if p < low:
            LOG.warning("A %s service records RPC version %s, older than any this release "
                        "serves (%s): it cannot be talked to; upgrade it", interface.name,
                        v, interface.oldest)
            p = low
        found.append(min(p, high))
    return "%d.%d" % min(found)


def from_services(interface, services, is_up):
    """``auto``'s cap from service records (dicts with ``binary`` and
    ``rpc_version``): those of the interface's binary that ``is_up``, enabled
    or disabled; every record of it when none is up."""
    rows = [s for s in services if s["binary"] == interface.binary]
    up = [s for s in rows if is_up(s)]
    return oldest(interface, [s.get("rpc_version") for s in (up or rows)])


def db_reader(db, interface, down_time):
    """A function reading ``auto``'s cap for ``interface`` from ``db``."""
    def read():
        return from_services(interface, db.service_list(binary=interface.binary),
                             lambda s: db.is_host_up(s, down_time))
    return read


class VersionCap:
    """The cap one service puts on what it sends to one interface.

    Fixed (a version, or the newest when unset) or ``auto``. Every client of
    that interface in the service :meth:`follow` s it, so a change reaches
    them all. An ``auto`` cap starts at the oldest version served and moves
    when :meth:`refresh` reads the services table (``read``) or when it is
    :meth:`set` from what a conductor said.
    """

    def __init__(self, interface, level=None, read=None, refresh_after=REFRESH_AFTER):
        check_level(interface, level)
        self.interface = interface
        self.level = level
        self.auto = level == AUTO
        self.value = interface.newest if level is None else \
            interface.oldest if self.auto else level
        self._read = read
        self.refresh_after = refresh_after
        self._read_at = None
        self._clients = []
        self._lock = threading.Lock()

    @classmethod
    def of(cls, cap, interface):
        """``cap`` itself, or a fixed cap of a version string (None: the newest)."""
        return cap if isinstance(cap, VersionCap) else cls(interface, cap)

    def follow(self, client):
        """Keep an oslo.messaging client's ``version_cap`` at this cap."""
        self._clients.append(client)
        client.version_cap = self.value

    def current(self):
        """The cap, read again first if it is ``auto`` and its last read is stale."""
        if self.auto and self._read is not None and (
                self._read_at is None
                or time.monotonic() - self._read_at >= self.refresh_after):
            self.refresh()
        return self.value

    def refresh(self):
        """Read an ``auto`` cap from the services table now."""
        if not self.auto or self._read is None:
            return self.value
        try:
            value = self._read()
        except Exception as e:  # noqa: BLE001 - keep the last cap; the next read may work
            LOG.warning("[upgrade_levels] %s = auto: could not read the services' RPC "
                        "versions (%s); still sending up to %s", self.interface.name, e,
                        self.value)
            value = self.value
        self._read_at = time.monotonic()
        self.set(value)
        return self.value

    def set(self, value):
        """An ``auto`` cap told from elsewhere (an agent: the conductor's answer when
        it registers). A fixed cap does not move."""
        if not self.auto or value is None:
            return
        value = oldest(self.interface, [value])
        with self._lock:
            was, self.value = self.value, value
            for client in self._clients:
                client.version_cap = value
        if value != was:
            LOG.info("[upgrade_levels] %s = auto: sending %s RPC up to %s (was %s)",
                     self.interface.name, self.interface.name, value, was)

    def describe(self):
        """e.g. "compute RPC up to 2.0 ([upgrade_levels] compute = auto)"."""
        name = self.interface.name
        how = f"[upgrade_levels] {name} unset: the newest" if self.level is None else \
            f"[upgrade_levels] {name} = {self.level}"
        return f"{name} RPC up to {self.value} ({how})"


def cap(conf, interface, db=None):
    """The cap ``[upgrade_levels] <interface>`` sets in a service; ``db``: where
    ``auto`` reads the services (None for agents, which are told)."""
    level = getattr(conf.upgrade_levels, interface.name)
    read = db_reader(db, interface, conf.service_down_time) if db is not None else None
    return VersionCap(interface, level, read)
