"""The --wait progress figures and line (api.client.progress), from given samples."""

import io

from api.client import progress

MIB = 1024 * 1024


def _detail(second, processed, remaining, total=1024 * MIB):
    return {'memory_total_bytes': total, 'memory_processed_bytes': processed,
            'memory_remaining_bytes': remaining, 'disk_total_bytes': 0,
            'disk_processed_bytes': 0, 'disk_remaining_bytes': 0,
            'updated_at': f'2026-01-01T00:00:{second:02d}.000000'}


def test_percent_never_goes_backwards_when_remaining_grows():
    stats = progress.TransferStats()
    stats.add(_detail(0, 512 * MIB, 512 * MIB))
    assert stats.percent == 50
    # The guest dirtied more than went out: remaining grows, the percent stays.
    stats.add(_detail(1, 768 * MIB, 600 * MIB))
    assert (stats.percent, stats.remaining) == (50, 600 * MIB)
    assert stats.eta is None  # not shrinking: no ETA rather than a made-up one
    assert stats.rate == 256 * MIB
    assert stats.fields() == [' 50%', '600.0 MiB left', '256.0 MiB/s']


def test_rate_and_eta_over_the_api_sample_times():
    stats = progress.TransferStats()
    stats.add(_detail(0, 0, 1024 * MIB))
    assert stats.rate is None and stats.eta is None  # one sample says nothing of speed
    stats.add(_detail(2, 512 * MIB, 768 * MIB))
    # The same record read again (no new sample) changes nothing.
    stats.add(_detail(2, 512 * MIB, 768 * MIB))
    assert stats.rate == 256 * MIB          # 512 MiB sent in 2 s
    assert stats.eta == 6                   # 768 MiB left, shrinking 128 MiB/s
    assert stats.fields() == [' 25%', '768.0 MiB left', '256.0 MiB/s', 'ETA 6s']


def test_null_counters_before_the_transfer_show_nothing():
    stats = progress.TransferStats()
    stats.add({'memory_total_bytes': None, 'memory_remaining_bytes': None,
               'updated_at': '2026-01-01T00:00:00'})
    assert stats.fields() == []


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_line_is_rewritten_and_ended():
    stream = _Terminal()
    line = progress.ProgressLine(stream)
    line.show('running', 'live-migration 1: running   10%')
    line.show('running', 'live-migration 1: running   20%')
    line.end(['live-migration 1 completed: h1 -> h2 after 3s'])
    assert stream.getvalue() == ('\rlive-migration 1: running   10%\x1b[K'
                                 '\rlive-migration 1: running   20%\x1b[K\n'
                                 'live-migration 1 completed: h1 -> h2 after 3s\n')


def test_without_terminal_one_line_per_phase():
    stream = io.StringIO()
    line = progress.ProgressLine(stream)
    for phase, pct in (('queued', ''), ('running', '10%'), ('running', '20%'),
                       ('post-migrating', '100%')):
        line.show(phase, f'live-migration 1: {phase} {pct}'.strip())
    line.end(['done'])
    assert stream.getvalue().splitlines() == [
        'live-migration 1: queued', 'live-migration 1: running 10%',
        'live-migration 1: post-migrating 100%', 'done']


def test_human_units():
    assert progress.human_bytes(512) == '512 B'
    assert progress.human_bytes(3 * 1024 ** 3 // 2) == '1.5 GiB'
    assert [progress.human_seconds(s) for s in (4.4, 65, 3725)] == ['4s', '1m05s', '1h02m']


def test_interrupted_wait_ends_the_line_and_says_the_move_goes_on(monkeypatch):
    monkeypatch.setattr(progress.common, 'POLL_INTERVAL', 0)
    stream = _Terminal()
    records = iter([{'id': 4, 'migration_type': 'migration', 'status': 'migrating'}])

    def find():
        try:
            return next(records)
        except StopIteration:
            raise KeyboardInterrupt from None
    follower = progress.MoveFollower(None, 'srv-1', progress.COLD_MOVE, find, stream,
                                     clock=lambda: 0)

    try:
        follower.follow(timeout=60)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError('the interrupt was swallowed')

    assert stream.getvalue() == (
        '\rmigration 4: migrating  0s\x1b[K\n'
        'interrupted; the move goes on: `godwit migration list --instance srv-1` shows it\n')


def test_dirty_rate_and_max_downtime_from_the_timeline_newest_first():
    stats = progress.TransferStats()
    stats.tuning([
        {'kind': 'progress', 'detail': {'dirty_rate': 1 * MIB, 'max_downtime_ms': 50}},
        {'kind': 'tuning', 'name': 'monitor', 'detail': {'max_downtime_ms': 75}},
        {'kind': 'progress', 'detail': {'dirty_rate': 3 * MIB}},
        {'kind': 'intent', 'detail': {'max_downtime_ms': 9999}}])   # asked, not applied
    assert (stats.dirty_rate, stats.max_downtime_ms) == (3 * MIB, 75)
    assert stats.fields() == ['dirty 3.0 MiB/s', 'max downtime 75 ms']
    assert stats.fields(tuning=False) == []


def test_a_narrow_terminal_gets_the_shorter_line(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(progress.shutil, 'get_terminal_size',
                        lambda fallback: type('S', (), {'columns': 40})())
    out = Tty()
    line = progress.ProgressLine(out)
    line.show('running', 'x' * 50 + '  3s', 'short  3s')
    line.show('running', 'fits  4s', 'short  4s')
    assert out.getvalue() == '\rshort  3s\x1b[K\rfits  4s\x1b[K'
