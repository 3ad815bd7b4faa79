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
* its tuning (when the job started, the downtime step reached, whether it
  was forced) goes to the conductor with the progress and is stored with the
  migration, so a monitor attached again by a restarted agent resumes where
  the first one was instead of starting the steps over.

Guest data in GiB counts RAM plus the disks copied by block migration, each at
least 2 GiB, as in Nova.
"""

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


def initial_params(conf, instance, migrate_data):
    lv = conf.libvirt
    steps = downtime_steps(conf, data_gb(instance, migrate_data))
    return {"bandwidth_mib": lv.live_migration_bandwidth, "max_downtime_ms": steps[0][1],
            "auto_converge": lv.live_migration_permit_auto_converge,
            "post_copy": lv.live_migration_permit_post_copy}


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

    @property
    def tuning(self):
        return {"started_at": self.started_at, "downtime_step": self.step,
                "max_downtime_ms": self.steps[self.step][1], "forced": self.forced}

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

    def _progress(self, stats):
        total = (stats.get("memory_total") or 0) + (stats.get("disk_total") or 0)
        remaining = (stats.get("memory_remaining") or 0) + (stats.get("disk_remaining") or 0)
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
        if self.step:
            self.job.set_max_downtime(self.steps[self.step][1])
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
            while self.step + 1 < len(self.steps) and elapsed >= self.steps[self.step + 1][0]:
                self.step += 1
                tuned = True
                self.job.set_max_downtime(self.steps[self.step][1])
                LOG.debug("Allowed downtime raised to %d ms", self.steps[self.step][1])
            # Only movement (and tuning) is recorded: a job that stalls stops
            # touching the record, which is what the conductor looks for.
            moved = (stats.get("memory_processed"), stats.get("disk_processed"),
                     stats.get("memory_remaining"), stats.get("disk_remaining"))
            if moved != self._last_reported or tuned:
                self._last_reported = moved
                # Tuning only when it changed (the first report carries it too):
                # storing it costs the conductor a read and a write.
                tuning = self.tuning if self.tuning != self._sent_tuning else None
                self._sent_tuning = self.tuning
                self.report(stats, self._progress(stats), tuning)
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
            if self.timed_out and self.conf.libvirt.live_migration_timeout_action == "abort":
                raise MigrationAborted(
                    f"aborted after the completion timeout of {self.completion_timeout:.0f} s "
                    "(live_migration_completion_timeout x GiB of guest data); the guest did "
                    "not converge", by_request=False) from e
            raise
        self.percent = 100
        return self.job.stats()
