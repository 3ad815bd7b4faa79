"""Host drains: ``godwit host drain|drain-status|drain-cancel`` (the Godwit
extension /os-host-drains, docs/host-drain.md).

The drain runs in the conductors; these commands ask for it, show its report
(one row per guest: state, destination, the moves the drain started, why it
did not move) and cancel it. ``drain --wait`` follows it with a progress line
on stderr, as the moves' --wait does, and ends with the report.
"""

import time
import uuid

from cliff.command import Command
from cliff.lister import Lister

from api.client import common, progress
from api.client.common import ApiCommand, seg
from api.client.http import ClientError

REPORT_COLUMNS = ('Guest', 'Name', 'State', 'Predicted', 'Destination', 'Migration',
                  'Reason')
# What a guest that left the host (or no longer exists) ends as: anything
# else means the drain did not empty the host.
EMPTIED = ('moved', 'gone')
# The order the summary shows the guests' states in.
STATE_ORDER = ('moved', 'moving', 'cold-moving', 'pending', 'skipped', 'left', 'failed',
               'gone')


def predicted(guest):
    """The guest's predicted live-migration time as the report shows it."""
    if guest.get('predicted_s') is not None:
        return f"{guest['predicted_s']:g}s"
    if (guest.get('prediction') or '').startswith('never converges'):
        return 'never'
    return ''


def report_rows(drain):
    return [(g['instance_uuid'], g['name'], g['state'], predicted(g), g['destination'] or '',
             ','.join(str(m) for m in g['migrations'] or ()), g['reason'] or '')
            for g in drain['guests']]


def order_note(drain):
    if drain.get('ordered_by'):
        return f"guests in order of {drain['ordered_by']}"
    return 'guests not ordered yet'


def summary(drain):
    counts = drain['summary']
    parts = [f'{counts[s]} {s}' for s in STATE_ORDER if counts.get(s)]
    return ', '.join(parts) or 'no guests'


def _is_uuid(text):
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class HostDrain(ApiCommand, Lister):
    """Drain a compute host: disable it and move every guest away, live.

    The conductors do the work, so it goes on if this command stops: guests
    are moved shortest predicted live migration first (smallest memory first
    when the host cannot estimate), as many at once as the host's
    max_concurrent_live_migrations allows, each to the host the scheduler
    chooses; guests that arrive meanwhile are added. A guest whose live
    migration is refused, fails or runs past --guest-timeout (then aborted)
    gets the fallback: skip it (and do not even try one predicted never to
    converge or to outlast --guest-timeout), cold-migrate it (and confirm),
    or leave it (every guest is tried). The host stays disabled: enable it again with
    `godwit service enable <host>`. Prints the drain's report (with --wait,
    once it ended; exit code 3 unless every guest moved).
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('host', help='The compute host to empty')
        parser.add_argument('--fallback', choices=('skip', 'cold', 'leave'),
                            help="For a guest that cannot be live-migrated: 'skip' it, "
                                 "'cold' migrate it, or 'leave' it (default skip)")
        parser.add_argument('--on-cancel', choices=('abort', 'finish'),
                            help="What a cancel does to the live migrations under way: "
                                 "'abort' them (default) or let them 'finish'")
        parser.add_argument('--guest-timeout', type=int, metavar='SECONDS',
                            help="Abort a guest's live migration after this long and "
                                 "apply the fallback (default: the cloud's "
                                 "host_drain_guest_timeout, 1800)")
        parser.add_argument('--wait', action='store_true',
                            help='Wait until the drain ends, showing its progress on '
                                 'stderr (exit code 3 unless every guest moved)')
        parser.add_argument('--timeout', type=float, default=3600, metavar='SECONDS',
                            help='How long --wait waits (default %(default)s; exit code 4 '
                                 'when it runs out, the drain goes on)')
        return parser

    def take_action(self, args):
        wanted = {'host': args.host}
        for key, value in (('fallback', args.fallback), ('on_cancel', args.on_cancel),
                           ('guest_timeout', args.guest_timeout)):
            if value is not None:
                wanted[key] = value
        drain = self.client.post('/os-host-drains', {'host_drain': wanted})['host_drain']
        if not args.wait:
            self.app.stderr.write(
                f"drain {drain['id']} of {drain['host']} started: "
                f"{len(drain['guests'])} guests; `godwit host drain-status {drain['id']}` "
                "follows it\n")
            return REPORT_COLUMNS, report_rows(drain)
        drain = follow(self.client, drain, self.app.stderr, args.timeout)
        if any(g['state'] not in EMPTIED for g in drain['guests']):
            self.exit_code = common.EXIT_ENDED_BADLY
        return REPORT_COLUMNS, report_rows(drain)


def follow(client, drain, stream, timeout, clock=time.monotonic):
    """Poll ``drain`` until it ends; a progress line per change, then the outcome."""
    line = progress.ProgressLine(stream)
    start = clock()
    path = f"/os-host-drains/{seg(drain['id'])}"
    label = f"drain {drain['id']} of {drain['host']}"
    try:
        while True:
            text = f"{label}: {drain['status']}  {summary(drain)}"
            line.show(text, f'{text}  {progress.human_seconds(clock() - start)}')
            if drain['status'] in ('finished', 'cancelled'):
                break
            if clock() - start >= timeout:
                line.end([])
                raise common.WaitTimedOut(
                    f'timed out after {timeout:g}s waiting for {label} (now '
                    f"{drain['status']}); it goes on: `godwit host drain-status "
                    f"{drain['id']}` shows it")
            time.sleep(common.POLL_INTERVAL)
            drain = client.get(path)['host_drain']
    except KeyboardInterrupt:
        line.end([f"interrupted; the drain goes on: `godwit host drain-status "
                  f"{drain['id']}` shows it"])
        raise
    line.end([f"{label} {drain['status']} after "
              f"{progress.human_seconds(clock() - start)}: {summary(drain)}"])
    return drain


class HostDrainStatus(ApiCommand, Lister):
    """Show a host drain's report: each guest's state, destination, the moves the
    drain started for it, and why it did not move. Takes the drain's id, or a
    host (its newest drain); the drain's status goes to stderr."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('drain', help='Drain id, or a host name (its newest drain)')
        return parser

    def take_action(self, args):
        if _is_uuid(args.drain):
            drain = self.client.get(f'/os-host-drains/{seg(args.drain)}')['host_drain']
        else:
            found = self.client.get('/os-host-drains',
                                    params={'host': args.drain})['host_drains']
            if not found:
                raise ClientError(f'host {args.drain} has never been drained; `godwit '
                                  f'host drain {args.drain}` drains it')
            drain = found[0]
        self.app.stderr.write(f"drain {drain['id']} of {drain['host']}: {drain['status']} "
                              f"({summary(drain)}; fallback {drain['fallback']}, "
                              f"guest timeout {drain['guest_timeout']}s); "
                              f"{order_note(drain)}\n")
        return REPORT_COLUMNS, report_rows(drain)


class HostDrainCancel(ApiCommand, Command):
    """Cancel a host drain: it starts no new move; with on_cancel 'abort' its live
    migrations under way are aborted, with 'finish' they end first. The host
    stays disabled (`godwit service enable <host>`)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('drain', help="Drain id (`godwit host drain-status <host>` "
                                          "shows it)")
        return parser

    def take_action(self, args):
        self.client.delete(f'/os-host-drains/{seg(args.drain)}')
