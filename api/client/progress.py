"""Following a move to its end for --wait, with a progress line on stderr.

What the line shows comes from the API only:

* the phase: the migration's status (GET /os-migrations);
* for a live migration that is transferring, the counters of
  GET /servers/{id}/migrations/{mid} (memory_* and disk_* bytes): the percent
  done (as the source's monitor computes it, and never lower than before),
  the data remaining, the transfer rate and an ETA. Rate and ETA are the
  change of those counters between the API's own sample times (the record's
  updated_at), over the last few samples;
* for a live migration that is transferring, from its timeline (the Godwit
  extension GET /servers/{id}/migrations/{mid}/timeline, read at most every
  TUNING_EVERY seconds): the guest's dirty rate (the newest progress sample)
  and the max downtime allowed now (the newest sample or tuning entry);
* the time this command has waited.

Cold moves report no byte counters, and an API without the timeline
extension no rates: those are left out rather than guessed.

On a terminal the line is rewritten in place (``\\r``); otherwise one line is
printed per phase change, so logs stay readable. The end is one outcome line,
and on failure the migration's error and the server's state and fault.
"""

import collections
import dataclasses
import datetime
import shutil
import time

from api.client import common
from api.client.http import ClientError

#: Live migration phases in which the server migration resource has counters.
TRANSFERRING = ('running', 'post-migrating')
#: Samples the rate and ETA are taken over (one per monitor report).
RATE_WINDOW = 5
#: Seconds between two reads of the timeline (dirty rate, max downtime).
TUNING_EVERY = 2.0


@dataclasses.dataclass(frozen=True)
class Move:
    """What --wait waits for: the statuses that end the move, well or badly."""

    succeeded: frozenset
    failed: frozenset
    live: bool = False

    @property
    def final(self):
        return self.succeeded | self.failed


LIVE_MIGRATION = Move(frozenset({'completed'}),
                      frozenset({'failed', 'error', 'cancelled'}), live=True)
# A cold migration or resize is done once the guest runs on the destination
# and waits for confirm or revert (VERIFY_RESIZE), or was confirmed already
# (resize_confirm_window).
COLD_MOVE = Move(frozenset({'finished', 'confirmed'}),
                 frozenset({'failed', 'error', 'reverted'}))
RESIZE_CONFIRM = Move(frozenset({'confirmed'}), frozenset({'error', 'failed'}))
RESIZE_REVERT = Move(frozenset({'reverted'}), frozenset({'error', 'failed'}))


def human_bytes(count):
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(count) < 1024:
            return f'{count:.0f} {unit}' if unit == 'B' else f'{count:.1f} {unit}'
        count /= 1024
    return f'{count:.1f} TiB'


def human_seconds(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    if seconds < 3600:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


def _timestamp(text):
    try:
        stamp = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
    except (AttributeError, ValueError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def _sum(detail, *keys):
    values = [detail.get(k) for k in keys]
    if all(v is None for v in values):
        return None
    return sum(v or 0 for v in values)


class TransferStats:
    """The figures derived from a live migration's byte counters."""

    def __init__(self):
        self.percent = None
        self.remaining = None
        self.dirty_rate = None
        self.max_downtime_ms = None
        self._samples = collections.deque(maxlen=RATE_WINDOW)

    def add(self, detail):
        total = _sum(detail, 'memory_total_bytes', 'disk_total_bytes')
        remaining = _sum(detail, 'memory_remaining_bytes', 'disk_remaining_bytes')
        processed = _sum(detail, 'memory_processed_bytes', 'disk_processed_bytes')
        if total is None or remaining is None:
            return  # not transferring yet: the counters are null
        self.remaining = remaining
        if total:
            percent = int(100 * (total - remaining) / total)
            self.percent = percent if self.percent is None else max(self.percent, percent)
        stamp = _timestamp(detail.get('updated_at'))
        if stamp is not None and processed is not None and \
                (not self._samples or stamp > self._samples[-1][0]):
            self._samples.append((stamp, processed, remaining))

    @property
    def rate(self):
        """Bytes sent per second over the window; None before two samples."""
        if len(self._samples) < 2:
            return None
        (t0, sent0, _), (t1, sent1, _) = self._samples[0], self._samples[-1]
        return max(sent1 - sent0, 0) / (t1 - t0)

    @property
    def eta(self):
        """Seconds until nothing remains, at the rate it shrank over the window;
        None while it does not shrink (the guest dirties memory as fast)."""
        if len(self._samples) < 2:
            return None
        (t0, _, left0), (t1, _, left1) = self._samples[0], self._samples[-1]
        shrink = (left0 - left1) / (t1 - t0)
        return left1 / shrink if shrink > 0 else None

    def tuning(self, entries):
        """The dirty rate and max downtime from a timeline, newest first."""
        for e in reversed(entries):
            d = e.get('detail') or {}
            if self.max_downtime_ms is None and e.get('kind') in ('progress', 'tuning') \
                    and d.get('max_downtime_ms') is not None:
                self.max_downtime_ms = d['max_downtime_ms']
            if self.dirty_rate is None and e.get('kind') == 'progress' \
                    and d.get('dirty_rate') is not None:
                self.dirty_rate = d['dirty_rate']

    def fields(self, tuning=True):
        """The figures; without ``tuning`` the dirty rate and max downtime are
        left out (a narrow terminal)."""
        out = []
        if self.percent is not None:
            out.append(f'{self.percent:3d}%')
        if self.remaining is not None:
            out.append(f'{human_bytes(self.remaining)} left')
        if self.rate is not None:
            out.append(f'{human_bytes(self.rate)}/s')
        if self.eta is not None:
            out.append(f'ETA {human_seconds(self.eta)}')
        if tuning and self.dirty_rate is not None:
            out.append(f'dirty {human_bytes(self.dirty_rate)}/s')
        if tuning and self.max_downtime_ms is not None:
            out.append(f'max downtime {self.max_downtime_ms} ms')
        return out


class ProgressLine:
    """One line on a terminal rewritten in place; elsewhere a line per phase."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = _isatty(stream)
        self._phase = None
        self._open = False

    def show(self, phase, text, *shorter):
        """``shorter``: the same line with fewer fields, tried in turn on a
        terminal too narrow for ``text`` (the waited time stays at the end)."""
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            for short in shorter:
                if len(text) <= width:
                    break
                text = short
            # \x1b[K clears what a longer previous line left on the right.
            self.stream.write('\r' + text[:width] + '\x1b[K')
            self._open = True
        elif phase != self._phase:
            self.stream.write(text + '\n')
        self._phase = phase
        self.stream.flush()

    def end(self, lines):
        if self._open:
            self.stream.write('\n')
            self._open = False
        for line in lines:
            self.stream.write(line + '\n')
        self.stream.flush()


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class MoveFollower:
    """Poll a move until it ends; show its progress and then its outcome.

    ``find`` returns the migration record (as GET /os-migrations lists it), or
    None while it has not appeared yet.
    """

    def __init__(self, client, server_id, move, find, stream, clock=time.monotonic):
        self.client = client
        self.server_id = server_id
        self.move = move
        self.find = find
        self.line = ProgressLine(stream)
        self.clock = clock
        self.stats = TransferStats()
        self._tuning_read = None
        self._timeline_ok = True

    def follow(self, timeout):
        """The migration record once its status is final; True if it succeeded.

        :raises: common.WaitTimedOut after ``timeout`` seconds.
        """
        start = self.clock()
        try:
            return self._follow(start, timeout)
        except KeyboardInterrupt:
            # Stopping the wait does not stop the move; say so below the line.
            self.line.end([f'interrupted; the move goes on: {self._follow_hint()}'])
            raise

    def _follow(self, start, timeout):
        migration = None
        while True:
            found = self.find()
            migration = found or migration
            if migration is not None:
                status = migration.get('status')
                if self.move.live and status in TRANSFERRING:
                    self._sample(migration)
                waited = self.clock() - start
                self.line.show(status, self._text(migration, waited),
                               self._text(migration, waited, tuning=False))
                if status in self.move.final:
                    break
            if self.clock() - start >= timeout:
                self.line.end([])
                raise common.WaitTimedOut(self._timed_out(migration, timeout))
            time.sleep(common.POLL_INTERVAL)
        succeeded = migration['status'] in self.move.succeeded
        self.line.end(self._outcome(migration, succeeded, self.clock() - start))
        return migration, succeeded

    def _sample(self, migration):
        path = (f'/servers/{common.seg(self.server_id)}/migrations/'
                f'{common.seg(migration["id"])}')
        try:
            self.stats.add(self.client.get(path)['migration'])
        except ClientError as exc:
            if exc.code != 404:  # 404: it ended between the two requests
                raise
        now = self.clock()
        if self._timeline_ok and (self._tuning_read is None or
                                  now - self._tuning_read >= TUNING_EVERY):
            try:
                entries = self.client.get(path + '/timeline')['timeline']
            except ClientError as exc:
                # An API without the extension (404 for good), or a refusal:
                # the line goes on without these figures.
                self._timeline_ok = exc.code not in (403, 404)
                return
            fresh = TransferStats()
            fresh.tuning(entries)
            if fresh.dirty_rate is not None or fresh.max_downtime_ms is not None:
                # Until the first sample is there, looked at again next time.
                self._tuning_read = now
                self.stats.dirty_rate = fresh.dirty_rate
                self.stats.max_downtime_ms = fresh.max_downtime_ms

    def _text(self, migration, waited, tuning=True):
        status = migration.get('status')
        fields = [f'{_label(migration)}: {status}']
        # Only while transferring: once it ended, the last sample's figures
        # (say 97 %, 46 MiB left) would be stale; the outcome line follows.
        if self.move.live and status in TRANSFERRING:
            fields += self.stats.fields(tuning)
        fields.append(human_seconds(waited))
        return '  '.join(fields)

    def _outcome(self, migration, succeeded, waited):
        label, status = _label(migration), migration['status']
        route = f"{migration.get('source_compute')} -> {migration.get('dest_compute')}"
        if succeeded:
            return [f'{label} {status}: {route} after {human_seconds(waited)}']
        reason = migration.get('error_message') or 'the API gives no reason'
        lines = [f'{label} ended {status} ({route}): {reason}']
        lines += self._server_state()
        return lines

    def _server_state(self):
        try:
            server = self.client.get(f'/servers/{common.seg(self.server_id)}')['server']
        except ClientError as exc:
            return [f'server {self.server_id}: cannot be shown ({exc})']
        lines = [f"server {self.server_id} is {server.get('status')} on "
                 f"{server.get('OS-EXT-SRV-ATTR:host')}"]
        fault = server.get('fault')
        if fault:
            lines.append(f"server fault: {fault.get('message')}")
        return lines

    def _follow_hint(self):
        return f'`godwit migration list --instance {self.server_id}` shows it'

    def _timed_out(self, migration, timeout):
        hint = f'; it may still be under way: {self._follow_hint()}'
        if migration is None:
            return (f'timed out after {timeout:g}s: no migration of server '
                    f'{self.server_id} appeared{hint}')
        return (f"timed out after {timeout:g}s waiting for {_label(migration)} "
                f"(now {migration.get('status')}){hint}")


def _label(migration):
    return f"{migration.get('migration_type') or 'migration'} {migration.get('id')}"
