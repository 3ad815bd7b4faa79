"""Watching and steering a live migration job until it ends.

Driver-independent: the fake and libvirt drivers both hand back a
:class:`compute.virt.base.MigrationJob`, and this loop applies the
operator's policy to it (``[libvirt]`` options, Nova's names and meaning):

* progress goes to the migration record every ``monitor_interval``; the
  percentage never goes backwards;
* the allowed downtime rises in ``live_migration_downtime_steps`` steps,
  ``live_migration_downtime_delay`` seconds per GiB of guest data apart;
* after ``live_migration_completion_timeout`` seconds per GiB the
  ``live_migration_timeout_action`` is taken: abort, or force completion;
* an abort or force-complete request from the API is acted on at the next
  look;
* a user's bandwidth or max downtime (``live_migration_tune``, through the
  API's set-speed and set-downtime) is applied at once; once the user set the
  downtime, the steps stop (the tuning says so);
* a stall, no progress for ``live_migration_stall_timeout`` seconds (the data
  remaining did not drop 1 %, or 64 MiB, below where it stood at the last
  progress; a user's tuning starts a new window), takes
  ``live_migration_stall_action``: raise the downtime to its maximum, switch
  to post-copy, pause, abort, or only record it;
* its tuning (when the job started, the downtime step reached, whether it
  was forced) goes to the conductor with the progress and is stored with the
  migration, so a monitor attached again by a restarted agent resumes where
  the first one was instead of starting the steps over.

Guest data in GiB counts RAM plus the disks copied by block migration, each at
least 2 GiB, as in Nova.
"""

import queue
import threading
import time

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3


class MigrationAborted(exception.GodwitException):
    """The job was cancelled; ``by_request`` tells a user's abort from a timeout."""
    msg_fmt = "%(reason)s"

    def __init__(self, reason, by_request):
        super().__init__(reason=reason)
        self.by_request = by_request


def data_left(stats):
    """(total, remaining) bytes of a job's memory and disks together."""
    return ((stats.get("memory_total") or 0) + (stats.get("disk_total") or 0),
            (stats.get("memory_remaining") or 0) + (stats.get("disk_remaining") or 0))


def data_gb(instance, migrate_data):
    ram = max(instance["memory_mb"] / 1024, 2)
    disk = 0
    if migrate_data.get("block_migration"):
        disk = max(instance["root_gb"] + instance["ephemeral_gb"], 2)
    return ram + disk


def downtime_steps(conf, gigabytes):
    """[(seconds after start, allowed downtime in ms), ...] rising to the maximum."""
    lv = conf.libvirt
    delay = int(lv.live_migration_downtime_delay * gigabytes)
    base = lv.live_migration_downtime / lv.live_migration_downtime_steps
    offset = (lv.live_migration_downtime - base) / lv.live_migration_downtime_steps
    return [(delay * i, int(base + offset * i))
            for i in range(lv.live_migration_downtime_steps + 1)]


def initial_params(conf, instance, migrate_data, tuning=None):
    """The job's parameters at its start; ``tuning``: what the user set already."""
    lv = conf.libvirt
    steps = downtime_steps(conf, data_gb(instance, migrate_data))
    tuning = tuning or {}
    return {"bandwidth_mib": tuning.get("user_bandwidth_mib") or lv.live_migration_bandwidth,
            "max_downtime_ms": tuning.get("user_downtime_ms") or steps[0][1],
            "auto_converge": lv.live_migration_permit_auto_converge,
            "post_copy": lv.live_migration_permit_post_copy,
            "parallel_connections": lv.live_migration_parallel_connections}


# How much the data remaining must drop below its lowest to count as progress:
# 1 %, but never more than STALL_BYTES, so that a large migration going slowly
# and steadily (64 GiB at 1 MiB/s moves 0.5 % in 300 s) is not called stalled.
STALL_MARGIN = 0.01
STALL_BYTES = 64 * 1024 * 1024
STALL_ACTIONS = ("raise_downtime", "post_copy", "pause", "abort", "none")
# How long a user's tuning waits for the hypervisor before the answer says so.
USER_APPLY_WAIT = 2.0


class MonitorStopped(Exception):
    """The agent stops: the monitor lets go of a job that goes on without it."""


class Monitor:
    def __init__(self, conf, job, instance, migrate_data, report, clock=time.monotonic,
                 resume=None):
        """``report(stats, percent, tuning)`` writes progress (the caller
        rate-limits nothing); ``resume``: the tuning a previous monitor of the
        same job reported (see the module docstring)."""
        self.conf = conf
        self.job = job
        self.report = report
        self.clock = clock
        gigabytes = data_gb(instance, migrate_data)
        self.steps = downtime_steps(conf, gigabytes)
        lv = conf.libvirt
        self.completion_timeout = lv.live_migration_completion_timeout * gigabytes
        self.interval = lv.live_migration_monitor_interval
        self.abort_requested = threading.Event()
        self.force_requested = threading.Event()
        self.percent = 0
        resume = resume or {}
        self.forced = resume.get("forced")  # "paused" or "post-copy" once forced
        self.step = resume.get("downtime_step", 0)
        # Time already spent by the job before this monitor (wall clock: the
        # previous monitor may have been another process).
        started_at = resume.get("started_at")
        self.elapsed_before = max(0.0, time.time() - started_at) if started_at else 0.0
        self.started_at = started_at or time.time()
        self.timed_out = False
        self.epoch = None
        self._last_reported = None
        self._sent_tuning = None
        # What the user set (set-speed, set-downtime), kept across monitors.
        self.user_downtime_ms = resume.get("user_downtime_ms")
        self.user_bandwidth_mib = resume.get("user_bandwidth_mib")
        self.bandwidth_mib = self.user_bandwidth_mib or lv.live_migration_bandwidth
        self._user_lock = threading.Lock()
        self._user_changed = False
        self._to_apply = queue.Queue()
        self._applier = None
        # Stalls: the lowest data remaining seen, and when (the monitor's clock).
        self.stall_timeout = lv.live_migration_stall_timeout
        self.stall_action = lv.live_migration_stall_action
        self.stalls = resume.get("stalls", 0)
        self.stall_outcome = resume.get("stall")
        self.stalled_abort = False
        self._lowest = None
        self._lowest_at = None
        # What the job uses (a job found again after a restart no longer knows).
        self.used = dict(getattr(job, "used", None) or {
            k: resume[k] for k in ("parallel_connections", "parallel_not_used")
            if k in resume})

    @property
    def max_downtime_ms(self):
        if self.user_downtime_ms is not None:
            return self.user_downtime_ms
        return self.steps[self.step][1]

    @property
    def tuning(self):
        t = {"started_at": self.started_at, "downtime_step": self.step,
             "max_downtime_ms": self.max_downtime_ms, "forced": self.forced}
        # Keys beyond the first four only once they mean something, so the
        # timeline of an untouched migration reads as before.
        if self.user_downtime_ms is not None:
            t["user_downtime_ms"] = self.user_downtime_ms
            t["downtime_steps"] = "stopped: the user set the max downtime"
        if self.user_bandwidth_mib is not None:
            t["user_bandwidth_mib"] = self.user_bandwidth_mib
        if self.bandwidth_mib:
            t["bandwidth_mib"] = self.bandwidth_mib
        if self.stalls:
            t["stalls"] = self.stalls
            t["stall"] = self.stall_outcome
        t.update(self.used)
        return t

    def set_user_tuning(self, bandwidth_mib=None, max_downtime_ms=None):
        """The user's bandwidth cap (MiB/s) and max downtime (ms): recorded at
        once (the downtime steps stop for good once the user set the downtime)
        and applied to the job by a thread of its own, waited for up to
        USER_APPLY_WAIT seconds: libvirt holds a new speed while a block
        migration copies its disks, and neither the caller nor the monitor's
        looks (an abort) should wait for that. Returns (tuning, applied)."""
        with self._user_lock:
            if bandwidth_mib is not None:
                self.user_bandwidth_mib = self.bandwidth_mib = bandwidth_mib
            if max_downtime_ms is not None:
                self.user_downtime_ms = max_downtime_ms
            self._user_changed = True
            tuning = self.tuning
            # Queued with the recording, under one lock: two changes reach the
            # job in the order they were recorded.
            done = self._queue_apply_locked(bandwidth_mib, max_downtime_ms)
        return tuning, done.wait(USER_APPLY_WAIT)

    def _queue_apply(self, bandwidth_mib, max_downtime_ms):
        with self._user_lock:
            return self._queue_apply_locked(bandwidth_mib, max_downtime_ms)

    def _queue_apply_locked(self, bandwidth_mib, max_downtime_ms):
        """Have the applier thread set these on the job (call with _user_lock);
        an Event set once done."""
        done = threading.Event()

        def apply():
            if bandwidth_mib is not None:
                self.job.set_max_speed(bandwidth_mib)
            if max_downtime_ms is not None:
                self.job.set_max_downtime(max_downtime_ms)
            LOG.info("Migration tuned by the user: bandwidth %s MiB/s, max downtime %s ms",
                     bandwidth_mib, max_downtime_ms)
        if self._applier is None:
            # One thread applies them all, in the order asked.
            self._applier = threading.Thread(target=self._apply_user_tuning,
                                             name="user-tuning", daemon=True)
            self._applier.start()
        self._to_apply.put((apply, done))
        return done

    def _apply_user_tuning(self):
        while True:
            try:
                apply, done = self._to_apply.get(timeout=5)
            except queue.Empty:
                with self._user_lock:
                    if self._to_apply.empty():
                        self._applier = None     # a later change starts another
                        return
                continue
            try:
                apply()
            except Exception:  # noqa: BLE001 - the job's steering logs and ignores its own
                LOG.exception("Applying the user's tuning failed")
            finally:
                done.set()

    def request_abort(self):
        self.abort_requested.set()

    def request_force_complete(self):
        self.force_requested.set()

    def _force_complete(self, why):
        if self.forced:
            return
        if self.conf.libvirt.live_migration_permit_post_copy:
            self.job.start_post_copy()
            self.forced = "post-copy"
        else:
            self.job.pause()
            self.forced = "paused"
        LOG.info("Forcing migration to complete (%s): %s", self.forced, why)

    def _check_stall(self, stats):
        """A stall: the data remaining has not dropped STALL_MARGIN (at most
        STALL_BYTES) below where it stood at the last progress for
        ``stall_timeout`` seconds. Takes the stall action; True if it
        changed the tuning (then the window starts again)."""
        if not self.stall_timeout or self.forced or self.abort_requested.is_set() \
                or self.stalled_abort:
            return False
        total, remaining = data_left(stats)
        now = self.clock()
        if not total:
            return False
        if self._lowest is None or \
                remaining < self._lowest - min(STALL_MARGIN * self._lowest, STALL_BYTES):
            self._lowest, self._lowest_at = remaining, now
            return False
        # Not lowered by smaller drops: those would never add up to the margin.
        if now - self._lowest_at < self.stall_timeout:
            return False
        self._lowest_at = now          # a new window
        self.stalls += 1
        self.stall_outcome = self._stall_act()
        LOG.warning("Migration made no progress for %d s (%d bytes remaining): %s",
                    self.stall_timeout, remaining, self.stall_outcome)
        return True

    def _stall_act(self):
        """Take the stall action; returns what was done, for the timeline."""
        action = self.stall_action
        window = f"no progress for {self.stall_timeout} s"
        if action == "abort":
            self.stalled_abort = True
            self.job.abort()
            return f"{window}: aborted"
        if action == "pause" or (action == "post_copy" and
                                 not self.conf.libvirt.live_migration_permit_post_copy):
            self.job.pause()
            self.forced = "paused"
            if action == "post_copy":
                return (f"{window}: paused the guest (post-copy is not permitted: "
                        "live_migration_permit_post_copy)")
            return f"{window}: paused the guest"
        if action == "post_copy":
            self.job.start_post_copy()
            self.forced = "post-copy"
            return f"{window}: switched to post-copy"
        if action == "raise_downtime":
            with self._user_lock:
                if self.user_downtime_ms is not None:
                    return f"{window}: downtime left as the user set it"
                if self.step + 1 >= len(self.steps):
                    return f"{window}: the downtime is already at its maximum"
                self.step = len(self.steps) - 1
                self.job.set_max_downtime(self.steps[self.step][1])
            return f"{window}: max downtime raised to {self.steps[self.step][1]} ms"
        return f"{window}: recorded only"

    def _progress(self, stats):
        total, remaining = data_left(stats)
        if total:
            self.percent = max(self.percent, int(100 * (total - remaining) / total))
        return self.percent

    def run(self, stopping=None):
        """Steer the job until it ends; return the job's last stats if the guest moved
        (the caller hands them to the conductor with the job's end).

        :raises: MigrationAborted if aborted (on request or by timeout), the
            job's own error, or MonitorStopped once ``stopping`` is set.
        """
        start = self.clock() - self.elapsed_before
        with self._user_lock:
            user = (self.user_bandwidth_mib, self.user_downtime_ms)
            if self.step and self.user_downtime_ms is None:
                self.job.set_max_downtime(self.max_downtime_ms)
        if user != (None, None):
            # A job found again after a restart: the user's values go through the
            # applier like a new request (libvirt may hold a new speed a while),
            # so this monitor's looks (an abort) never wait for them.
            self._queue_apply(*user)
        while True:
            if self.job.wait(self.interval):
                break
            if stopping is not None and stopping.is_set():
                raise MonitorStopped()
            elapsed = self.clock() - start
            stats = self.job.stats()
            tuned = False
            if self.abort_requested.is_set():
                self.job.abort()
                continue
            if self.force_requested.is_set() and not self.forced:
                self._force_complete("requested through the API")
                tuned = True
            with self._user_lock:
                if self._user_changed:
                    self._user_changed = False
                    tuned = True
                    if self._lowest is not None:
                        self._lowest_at = self.clock()   # new values get a whole window
                # A downtime the user set stops the steps: theirs stands.
                while self.user_downtime_ms is None and self.step + 1 < len(self.steps) \
                        and elapsed >= self.steps[self.step + 1][0]:
                    self.step += 1
                    tuned = True
                    self.job.set_max_downtime(self.steps[self.step][1])
                    LOG.debug("Allowed downtime raised to %d ms", self.steps[self.step][1])
            if self._check_stall(stats):
                tuned = True
            # Only movement (and tuning) is recorded: a job that stalls stops
            # touching the record, which is what the conductor looks for.
            moved = (stats.get("memory_processed"), stats.get("disk_processed"),
                     stats.get("memory_remaining"), stats.get("disk_remaining"))
            if moved != self._last_reported or tuned:
                self._last_reported = moved
                # Tuning only when it changed (the first report carries it too):
                # storing it costs the conductor a read and a write.
                with self._user_lock:
                    current = self.tuning     # once: a user's change may land meanwhile
                tuning = current if current != self._sent_tuning else None
                self._sent_tuning = current
                self.report(dict(stats, max_downtime_ms=self.max_downtime_ms),
                            self._progress(stats), tuning)
            if self.completion_timeout and elapsed > self.completion_timeout \
                    and not self.timed_out:
                self.timed_out = True
                action = self.conf.libvirt.live_migration_timeout_action
                LOG.warning("Migration exceeded its completion timeout of %d s; action %s",
                            self.completion_timeout, action)
                if action == "abort":
                    self.job.abort()
                else:
                    self._force_complete("completion timeout")
        try:
            self.job.result()
        except Exception as e:
            if self.abort_requested.is_set():
                raise MigrationAborted("aborted on request", by_request=True) from e
            if self.stalled_abort:
                raise MigrationAborted(
                    f"aborted: no progress for {self.stall_timeout} s (the data remaining "
                    "did not shrink; live_migration_stall_timeout, "
                    "live_migration_stall_action = abort)", by_request=False) from e
            if self.timed_out and self.conf.libvirt.live_migration_timeout_action == "abort":
                raise MigrationAborted(
                    f"aborted after the completion timeout of {self.completion_timeout:.0f} s "
                    "(live_migration_completion_timeout x GiB of guest data); the guest did "
                    "not converge", by_request=False) from e
            raise
        self.percent = 100
        return self.job.stats()
