"""conductor/prediction.py: pre-copy rounds, against figures worked out by hand."""

import pytest

from conductor.prediction import predict


def test_no_dirtying_takes_memory_over_bandwidth():
    p = predict(512, 256, 0, 500)
    assert p == {"converges": True, "duration_s": 2.0, "downtime_ms": 0.0, "rounds": 1}


def test_what_fits_in_the_downtime_goes_at_the_switch():
    # 100 MiB at 256 MiB/s is 390.6 ms: within 500 ms, no round needed.
    assert predict(100, 256, 0, 500) == {"converges": True, "duration_s": 0.391,
                                         "downtime_ms": 390.6, "rounds": 0}


def test_rounds_shrink_by_dirty_over_bandwidth():
    # 1024 MiB at 100 MiB/s, 50 MiB/s dirtied: 10.24 s, then 512 MiB (5.12 s), 256,
    # 128, then 64 MiB fits in 1000 ms (640 ms): about M / (B - R) = 20.48 s.
    p = predict(1024, 100, 50, 1000)
    assert p["converges"] and p["rounds"] == 4
    assert p["duration_s"] == pytest.approx(10.24 + 5.12 + 2.56 + 1.28 + 0.64)
    assert p["downtime_ms"] == pytest.approx(640.0)


def test_dirtying_as_fast_as_the_network_never_converges():
    assert predict(1024, 100, 100, 500)["converges"] is False
    assert predict(1024, 100, 150, 500)["duration_s"] is None


def test_block_migration_sends_the_disks_once():
    assert predict(512, 256, 0, 500, disk_mb=1024)["duration_s"] == 6.0


def test_unknown_bandwidth_predicts_nothing():
    assert predict(512, None, 0, 500) is None and predict(512, 0, 0, 500) is None
