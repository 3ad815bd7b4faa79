"""The monitor's policy, driven by a scripted job and a fake clock."""

import pytest

from compute import migration_monitor as mm
from compute.virt.base import MigrationJob
from godwit import conf as godwit_conf

GIB = 1024 ** 3


def make_conf(**libvirt):
    conf = godwit_conf.new_conf()
    conf([])
    for key, value in dict({"live_migration_monitor_interval": 0.01}, **libvirt).items():
        conf.set_override(key, value, group="libvirt")
    return conf


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class ScriptedJob(MigrationJob):
    """Ends after ``ticks`` looks unless told otherwise; records every command."""

    def __init__(self, clock, ticks=10**9, step_s=1.0, remaining=GIB, fail=False):
        self.clock = clock
        self.ticks = ticks
        self.step_s = step_s
        self.remaining = remaining
        self.fail = fail
        self.calls = []
        self.done = False

    def stats(self):
        return {"memory_total": 2 * GIB, "memory_processed": int(self.clock()),
                "memory_remaining": self.remaining, "disk_total": 0}

    def wait(self, timeout):
        self.clock.now += self.step_s
        self.ticks -= 1
        if self.ticks <= 0 or self.done:
            return True
        return False

    def result(self):
        if self.fail:
            raise RuntimeError("job failed")

    def set_max_downtime(self, ms):
        self.calls.append(("downtime", ms))

    def set_max_speed(self, mib):
        self.calls.append(("speed", mib))

    def abort(self):
        self.calls.append(("abort",))
        self.fail = True
        self.done = True

    def pause(self):
        self.calls.append(("pause",))
        self.done = True

    def start_post_copy(self):
        self.calls.append(("post-copy",))
        self.done = True


INSTANCE = {"memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0}


def test_downtime_steps_follow_novas_schedule():
    conf = make_conf(live_migration_downtime=500, live_migration_downtime_steps=10,
                     live_migration_downtime_delay=75)
    steps = mm.downtime_steps(conf, 3)
    assert len(steps) == 11
    assert steps[0] == (0, 50)
    assert steps[1] == (225, 95)
    assert steps[-1] == (2250, 500)
    assert [d for _, d in steps] == sorted(d for _, d in steps)


def test_data_gb_counts_at_least_two_per_part():
    assert mm.data_gb(INSTANCE, {}) == 2
    assert mm.data_gb(INSTANCE, {"block_migration": True}) == 4
    assert mm.data_gb({"memory_mb": 8192, "root_gb": 40, "ephemeral_gb": 0},
                      {"block_migration": True}) == 48


def test_downtime_is_raised_step_by_step():
    conf = make_conf(live_migration_downtime=300, live_migration_downtime_steps=3,
                     live_migration_downtime_delay=3, live_migration_completion_timeout=0)
    clock = Clock()
    job = ScriptedJob(clock, ticks=20)
    mm.Monitor(conf, job, INSTANCE, {}, report=lambda s, p: None, clock=clock).run()
    # 2 GiB x 3 s = a step every 6 s; the job lives 20 s: steps 1..3.
    assert [c for c in job.calls if c[0] == "downtime"] == [("downtime", 166),
                                                            ("downtime", 233),
                                                            ("downtime", 300)]


@pytest.mark.parametrize("action,expect", [("abort", ("abort",)), ("force_complete",
                                                                    ("pause",))])
def test_completion_timeout_takes_the_configured_action(action, expect):
    conf = make_conf(live_migration_completion_timeout=5,
                     live_migration_timeout_action=action)
    clock = Clock()
    job = ScriptedJob(clock)
    monitor = mm.Monitor(conf, job, INSTANCE, {}, report=lambda s, p: None, clock=clock)
    if action == "abort":
        with pytest.raises(mm.MigrationAborted) as err:
            monitor.run()
        assert not err.value.by_request
        assert "completion timeout of 10 s" in str(err.value)
    else:
        monitor.run()
        assert monitor.forced == "paused"
    assert expect in job.calls
    assert clock.now > 10


def test_force_complete_prefers_post_copy_when_permitted():
    conf = make_conf(live_migration_permit_post_copy=True)
    clock = Clock()
    job = ScriptedJob(clock)
    monitor = mm.Monitor(conf, job, INSTANCE, {}, report=lambda s, p: None, clock=clock)
    monitor.request_force_complete()
    monitor.run()
    assert job.calls == [("post-copy",)]
    assert monitor.forced == "post-copy"


def test_abort_on_request_is_reported_as_such():
    clock = Clock()
    job = ScriptedJob(clock)
    monitor = mm.Monitor(make_conf(), job, INSTANCE, {}, report=lambda s, p: None,
                         clock=clock)
    monitor.request_abort()
    with pytest.raises(mm.MigrationAborted) as err:
        monitor.run()
    assert err.value.by_request


def test_progress_never_goes_backwards_and_only_movement_is_reported():
    clock = Clock()
    reports = []
    remaining = iter([GIB, GIB // 2, GIB, GIB, GIB // 4])

    class Wobbly(ScriptedJob):
        def stats(self):
            self.remaining = next(remaining, 0)
            return {"memory_total": 2 * GIB, "memory_processed": 0,
                    "memory_remaining": self.remaining, "disk_total": 0}

    job = Wobbly(clock, ticks=6)
    mm.Monitor(make_conf(), job, INSTANCE, {}, report=lambda s, p: reports.append(p),
               clock=clock).run()
    # 50 %, 75 %, then back to 50 % remaining (reported as 75 % again), a repeat
    # that is not reported, 87 %, and 100 % at the end.
    assert reports == [50, 75, 75, 87, 100]
