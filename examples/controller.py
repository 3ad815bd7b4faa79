#!/usr/bin/env python3
"""An example cloud controller: moves servers through Godwit's RPC interface and
follows each move by its notifications alone, printing every phase until all
have ended. Uses only the public ``godwit.controller`` module.

    python examples/controller.py --transport-url rabbit://ctl:secret@broker:5672/godwit \\
        --live <server id> --resize <server id>=<flavor id>

A live migration goes where the scheduler sends it; a resize is confirmed as
soon as it is finished (waiting for the user's decision). Exit status: 0 when
every move ended completed or confirmed, 1 when one did not, 2 when one was
refused or the moves did not end within --timeout seconds.
"""

import argparse
import sys
import threading
import time

from godwit import exception
from godwit.controller import ControllerClient, listen

GOOD_ENDS = {"completed", "confirmed"}


class Moves:
    """The moves this controller started, and what the notifications say of them."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.Condition()
        self.started = {}       # migration id -> what was asked ("live", "resize")
        self.ended = {}         # migration id -> final status
        self.early = []         # notifications of moves whose call has not answered yet

    def heard(self, event_type, data):
        with self.lock:
            if data["migration"]["id"] not in self.started:
                self.early.append((event_type, data))
                return
        self._show(event_type, data)

    def _show(self, event_type, data):
        m = data["migration"]
        arrow = f"{data['previous_status']} -> {m['status']}" if data["previous_status"] \
            else m["status"]
        reason = f" ({data['reason']})" if data["reason"] else ""
        print(f"{time.strftime('%H:%M:%S')} migration {m['id']} {m['migration_type']} of "
              f"{m['instance_uuid']} {m['source_compute']} -> {m['dest_compute']}: "
              f"{event_type} {arrow}{reason}", flush=True)
        if event_type == "migration.phase" and m["status"] == "finished":
            # A cold migration or resize waits for a decision: this controller confirms.
            self.client.confirm_resize(m["instance_uuid"])
        if event_type in ("migration.end", "migration.error"):
            with self.lock:
                self.ended[m["id"]] = m["status"]
                self.lock.notify_all()

    def started_one(self, migration, what):
        with self.lock:
            self.started[migration["id"]] = what
            early = [e for e in self.early if e[1]["migration"]["id"] == migration["id"]]
            self.early = [e for e in self.early if e not in early]
        for event_type, data in early:
            self._show(event_type, data)

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.ended) < len(self.started):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport-url", required=True,
                        help="Godwit's broker, e.g. rabbit://user:password@host:5672/vhost")
    parser.add_argument("--pool", default="example-controller",
                        help="this controller's notification pool (its own queue)")
    parser.add_argument("--live", action="append", default=[], metavar="SERVER",
                        help="live-migrate SERVER (repeatable)")
    parser.add_argument("--resize", action="append", default=[], metavar="SERVER=FLAVOR",
                        help="resize SERVER to FLAVOR and confirm it (repeatable)")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    resizes = []
    for item in args.resize:
        server, sep, flavor = item.partition("=")
        if not sep or not server or not flavor:
            parser.error(f"--resize takes SERVER=FLAVOR, not {item!r}")
        resizes.append((server, flavor))
    if not args.live and not resizes:
        parser.error("nothing to do: give --live SERVER or --resize SERVER=FLAVOR")

    client = ControllerClient(args.transport_url, user_id="example-controller",
                              project_id="admin", roles=["admin"])
    moves = Moves(client)
    listener = listen(moves.heard, transport_url=args.transport_url, pool=args.pool)
    try:
        try:
            for server in args.live:
                moves.started_one(client.live_migrate(server), "live")
            for server, flavor in resizes:
                moves.started_one(client.resize(server, flavor), "resize")
        except exception.GodwitException as e:
            print(f"refused ({e.code}): {exception.message_of(e)}", file=sys.stderr)
            return 2
        if not moves.wait(args.timeout):
            print(f"not every move ended within {args.timeout:g} s", file=sys.stderr)
            return 2
    finally:
        listener.stop()
        listener.wait()
        client.close()
    bad = {mid: status for mid, status in moves.ended.items() if status not in GOOD_ENDS}
    for mid, status in sorted(moves.ended.items()):
        print(f"migration {mid}: {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
