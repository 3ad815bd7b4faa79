"""Waits that return as soon as what they wait for is true.

Godwit's API has no push channel for a server's or a migration's status, so
a wait has to ask. It asks at once, then after intervals that start at 1 ms
and grow by half up to 20 ms: a state that changes quickly is seen within a
millisecond or two, and a long wait costs the cloud under it about 50
requests a second, not a busy loop. A test never sleeps for a fixed time.
"""

import time

from godwit import phases

FIRST_INTERVAL = 0.001
MAX_INTERVAL = 0.02
DEFAULT_TIMEOUT = 30

#: Statuses a migration never leaves.
FINAL_MIGRATION_STATUSES = frozenset(phases.FINAL)


def wait_for(what, probe, timeout=DEFAULT_TIMEOUT):
    """``probe()`` once it returns something true; AssertionError after ``timeout``
    seconds, naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last seen: {value!r}")
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
        interval = min(interval * 1.5, MAX_INTERVAL)


def _statuses(status):
    return {status} if isinstance(status, str) else set(status)


def wait_server_status(client, server_id, status, timeout=DEFAULT_TIMEOUT):
    """The server once its status is ``status`` (a string, or several)."""
    wanted = _statuses(status)
    seen = {}

    def probe():
        seen["server"] = client.server(server_id)
        return seen["server"] if seen["server"]["status"] in wanted else None

    try:
        return wait_for(f"server {server_id} in {sorted(wanted)}", probe, timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; status {seen.get('server', {}).get('status')}") from None


def wait_migration_status(client, server_id, status=None, timeout=DEFAULT_TIMEOUT):
    """The newest migration of the server once its status is ``status`` (a
    string, or several); by default any final status."""
    wanted = FINAL_MIGRATION_STATUSES if status is None else _statuses(status)
    seen = {}

    def probe():
        seen["migration"] = client.latest_migration(server_id)
        m = seen["migration"]
        return m if m and m["status"] in wanted else None

    try:
        return wait_for(f"a migration of {server_id} in {sorted(wanted)}", probe, timeout)
    except AssertionError as e:
        m = seen.get("migration")
        raise AssertionError(f"{e}; newest migration: "
                             f"{m and (m['id'], m['status'])}") from None
