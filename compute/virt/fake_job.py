"""The fake hypervisor's migration job, which may outlive the agent that started it.

A libvirt migration job belongs to libvirtd: if the compute agent dies, the
job goes on and may finish. The fake job does the same when it runs as a
process of its own (``[fake] migration_job_runner = process``): it keeps its
state in ``<host dir>/jobs/<instance>.json`` and reads its steering from
``<instance>.control.json``, so a restarted agent finds it, watches it and
steers it again (:class:`FileJob`). With ``thread`` (godwit-all, the in-process
tests and benchmarks) it runs in the agent and dies with it, but still writes
the same files.

The transfer is a simulated pre-copy: memory goes out in rounds at the fake
network's bandwidth (``[fake] migration_bandwidth_mb``, capped by
set_max_speed) while the guest dirties ``migration_dirty_rate_mb`` MiB/s, so
remaining data shrinks only when the bandwidth is higher. The switch-over
happens once the rest fits in the allowed downtime. Pausing stops the
dirtying; post-copy switches at once; auto-converge throttles the dirty rate
by 20 % more each round that makes no headway. With no bandwidth the transfer
is instant.

The switch-over is ordered so that a crash at any point leaves at most one
running copy: the source's domain is marked switched out, then the
destination's record becomes the running guest, then the source's is removed.

Run as ``python -m compute.virt.fake_job <spec.json>``.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.virt import base
from godwit import exception, states

MIB = 1024 * 1024
TICK = 0.01
STATE_EVERY = 0.1   # seconds between state file writes while transferring


def _write_json(path, data):
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def job_paths(host_root, instance_uuid):
    d = os.path.join(host_root, "jobs")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, f"{instance_uuid}.json"), os.path.join(
        d, f"{instance_uuid}.control.json")


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class Runner:
    """One simulated migration (see the module docstring)."""

    def __init__(self, spec, in_process):
        self.spec = spec
        self.in_process = in_process
        self.uuid = spec["instance"]["uuid"]
        self.state_path, self.control_path = job_paths(spec["host_dir"], self.uuid)
        self.network = spec["network_mb"] * MIB
        params = spec["params"]
        self.max_speed = (params.get("bandwidth_mib") or 0) * MIB
        self.dirty_rate = spec["dirty_rate_mb"] * MIB
        self.max_downtime_ms = params.get("max_downtime_ms") or 500
        self.auto_converge = bool(params.get("auto_converge"))
        self.memory_total = spec["instance"]["memory_mb"] * MIB
        self.disk_total = spec.get("disk_total", 0)
        self.remaining = self.memory_total + self.disk_total
        self.processed = 0
        self.iteration = 1
        self.throttle = 0.0
        self.paused = False
        self.post_copy = False
        self.abort_requested = False
        self.downtime_ms = None
        self.state = "running"
        self.error = None
        self.lock = threading.Lock()
        self._control_mtime = None
        self._state_written = 0.0
        self.faults = fault_injection.for_host(spec["source"], spec["host_dir"],
                                               spec.get("faults") or ())
        # 'live_migration_converge[@<uuid>]:fail' armed on the source: this guest
        # re-dirties its memory as fast as the network carries it, so its
        # transfer never converges (until aborted, paused or switched to
        # post-copy), whatever the host's dirty rate.
        self.never_converges = self.faults.armed("live_migration_converge", self.uuid)

    # --- steering (in-process handle) and control file (process runner) -------
    def _read_control(self):
        try:
            mtime = os.stat(self.control_path).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._control_mtime:
            return
        self._control_mtime = mtime
        c = _read_json(self.control_path) or {}
        with self.lock:
            if c.get("abort"):
                self.abort_requested = True
            if c.get("pause"):
                self.paused = True
            if c.get("post_copy"):
                self.post_copy = True
            if c.get("max_downtime_ms"):
                self.max_downtime_ms = c["max_downtime_ms"]
            if c.get("max_speed_mib") is not None:
                self.max_speed = c["max_speed_mib"] * MIB

    def stats(self):
        with self.lock:
            mem_share = self.memory_total / max(self.memory_total + self.disk_total, 1)
            rem_mem = int(self.remaining * mem_share)
            rate = self._rate()
            return {"memory_total": self.memory_total, "memory_remaining": rem_mem,
                    "memory_processed": int(self.processed * mem_share),
                    "disk_total": self.disk_total,
                    "disk_remaining": int(self.remaining - rem_mem),
                    "disk_processed": int(self.processed * (1 - mem_share)),
                    "iteration": self.iteration,
                    "dirty_rate": 0 if self.paused else int(self.dirty_rate *
                                                            (1 - self.throttle)),
                    "bandwidth": rate,
                    "expected_downtime_ms": int(self.remaining / rate * 1000) if rate else 0,
                    "post_copy": self.post_copy, "paused": self.paused,
                    "throttle": self.throttle}

    def _write_state(self, force=False):
        now = time.monotonic()
        if not force and now - self._state_written < STATE_EVERY:
            return
        self._state_written = now
        _write_json(self.state_path, {
            "migration_id": self.spec["migration_id"], "dest": self.spec["dest"],
            "state": self.state, "error": self.error, "pid": os.getpid(),
            "in_process": self.in_process, "stats": self.stats()})

    def _rate(self):
        rates = [r for r in (self.network, self.max_speed) if r > 0]
        return min(rates) if rates else 0

    # --- the job ---------------------------------------------------------------
    def run(self):
        self._write_state(force=True)
        spec = self.spec
        dest = FakeHost(spec["hosts_path"], spec["dest"])
        try:
            rec = FakeHost(spec["hosts_path"], spec["source"]).get("domains", self.uuid)
            if rec is not None:
                # As QEMU's '-incoming' on the destination: a paused shell that
                # becomes the guest at the switch-over, or goes if the job fails.
                dest.put("domains", self.uuid, dict(rec, incoming=True, persistent=False,
                                                    power_state=states.PAUSED_POWER))
            self._transfer()
            if self.abort_requested:
                raise exception.HypervisorError(
                    host=self.spec["source"], reason="migration job cancelled by client")
            self._switch_over()
            self.state = "completed"
        except Exception as e:
            self.state = "failed"
            self.error = {"class": type(e).__name__, "message": exception.message_of(e),
                          "cancelled": self.abort_requested}
            shell = dest.get("domains", self.uuid)
            if shell is not None and shell.get("incoming"):
                dest.delete("domains", self.uuid)
        finally:
            self._write_state(force=True)

    def _transfer(self):
        round_left = self.remaining
        progress_at_round_start = self.remaining
        while True:
            if not self.in_process:
                self._read_control()
            with self.lock:
                if self.abort_requested:
                    return
                rate = self._rate()
                if rate == 0 and self.never_converges:
                    rate = 1024 * MIB   # an instant network still cannot outrun it
                if rate == 0:  # instant
                    self.processed += self.remaining
                    self.remaining = 0
                    return
                expected_ms = self.remaining / rate * 1000
                # A guest that never converges fits in no downtime (unless paused).
                fits = expected_ms <= self.max_downtime_ms and \
                    (not self.never_converges or self.paused)
                if self.post_copy or fits:
                    self.downtime_ms = min(expected_ms, self.max_downtime_ms)
                    pause_for = 0 if self.post_copy else expected_ms / 1000
                    break
                sent = min(self.remaining, rate * TICK)
                dirtied = 0 if self.paused else \
                    self.dirty_rate * (1 - self.throttle) * TICK
                if self.never_converges and not self.paused:
                    dirtied = max(dirtied, sent)
                self.processed += sent
                self.remaining = min(self.memory_total + self.disk_total,
                                     self.remaining - sent + dirtied)
                round_left -= sent
                if round_left <= 0:  # a full pass over what was dirty
                    self.iteration += 1
                    if self.auto_converge and self.remaining >= progress_at_round_start:
                        self.throttle = min(0.99, self.throttle + 0.2)
                    progress_at_round_start = self.remaining
                    round_left = self.remaining
            self._write_state()
            time.sleep(TICK)
        time.sleep(pause_for)
        with self.lock:
            self.processed += self.remaining
            self.remaining = 0

    def _switch_over(self):
        """The guest now runs on the destination; see the module docstring for the order."""
        spec = self.spec
        source = FakeHost(spec["hosts_path"], spec["source"])
        dest = FakeHost(spec["hosts_path"], spec["dest"])
        rec = source.get("domains", self.uuid)
        if rec is None:
            raise exception.HypervisorError(host=spec["source"],
                                            reason=f"domain {self.uuid} not found")
        dest_dir = os.path.join(spec["dest_instances_path"], self.uuid)
        if spec.get("block_migration"):
            shutil.copyfile(os.path.join(spec["source_instances_path"], self.uuid, "disk"),
                            os.path.join(dest_dir, "disk"))
        self.faults.check("live_migration_switch", self.uuid)
        source.put("domains", self.uuid, dict(rec, switched_out=True,
                                              power_state=states.PAUSED_POWER))
        dest.put("domains", self.uuid, dict(
            rec, disk=os.path.join(dest_dir, "disk"), persistent=False, incoming=False,
            power_state=states.PAUSED_POWER if self.paused else states.RUNNING))
        source.delete("domains", self.uuid)


class ThreadJob(base.MigrationJob):
    """A job run by a thread of the agent."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fake-migration-{runner.uuid[:8]}")

    def start(self):
        self._thread.start()

    def _run(self):
        try:
            self.runner.run()
        finally:
            if self.runner.state == "failed":
                self._error = error_of(self.runner.error, self.runner.spec["source"])
            self._done.set()
            with _thread_jobs_lock:
                key = (os.path.abspath(self.runner.spec["host_dir"]), self.runner.uuid)
                if _thread_jobs.get(key) is self:
                    del _thread_jobs[key]

    def stats(self):
        return self.runner.stats()

    def set_max_downtime(self, ms):
        with self.runner.lock:
            self.runner.max_downtime_ms = ms

    def set_max_speed(self, mib_per_s):
        with self.runner.lock:
            self.runner.max_speed = mib_per_s * MIB

    def abort(self):
        with self.runner.lock:
            self.runner.abort_requested = True

    def pause(self):
        with self.runner.lock:
            self.runner.paused = True

    def start_post_copy(self):
        with self.runner.lock:
            self.runner.post_copy = True


def error_of(error, host):
    """The job's error as an exception of the class it was raised as."""
    if not error:
        return None
    cls = getattr(exception, error.get("class") or "", None)
    if isinstance(cls, type) and issubclass(cls, exception.GodwitException):
        return cls(error["message"])
    return exception.HypervisorError(host=host, reason=error["message"])


class FileJob(base.PolledMigrationJob):
    """A job seen through its files: one run by a process of its own, or one a
    restarted agent found still running."""

    POLL = 0.05

    def __init__(self, host, host_root, instance_uuid, process=None):
        super().__init__()
        self.host = host
        self.state_path, self.control_path = job_paths(host_root, instance_uuid)
        self.process = process
        self._control = {}
        self._last = {}

    def _state(self):
        st = _read_json(self.state_path) or {}
        if st.get("state") == "running" and not pid_alive(st.get("pid")):
            # The runner died with the transfer half done: the job is over and
            # the guest stayed where it was (the switch-over is ordered).
            st = dict(st, state="failed", error={
                "class": "HypervisorError", "cancelled": False,
                "message": f"Hypervisor error on {self.host}: the migration job's process "
                           "ended before the switch-over"})
        return st

    def _check_done(self):
        if self._done.is_set():
            return True
        st = self._state()
        if st.get("stats"):
            self._last = st["stats"]
        if st.get("state") in ("completed", "failed"):
            if st["state"] == "failed":
                self._error = error_of(st.get("error"), self.host)
            self._done.set()
            if self.process is not None:
                self.process.wait()
        return self._done.is_set()

    def stats(self):
        self._check_done()
        return dict(self._last)

    def _steer(self, **changes):
        if self._done.is_set():
            return
        self._control.update(changes)
        _write_json(self.control_path, self._control)

    def set_max_downtime(self, ms):
        self._steer(max_downtime_ms=ms)

    def set_max_speed(self, mib_per_s):
        self._steer(max_speed_mib=mib_per_s)

    def abort(self):
        self._steer(abort=True)

    def pause(self):
        self._steer(pause=True)

    def start_post_copy(self):
        self._steer(post_copy=True)


def start(spec, runner_kind):
    """Start the job of ``spec``; returns its MigrationJob."""
    state_path, control_path = job_paths(spec["host_dir"], spec["instance"]["uuid"])
    for path in (state_path, control_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if runner_kind == "process" and spec["network_mb"] > 0:
        spec_path = state_path[:-len(".json")] + ".spec.json"
        _write_json(spec_path, spec)
        # A session of its own: the job must not die with the agent's process
        # group (a SIGKILL of the agent, or a terminal's Ctrl-C).
        proc = subprocess.Popen([sys.executable, "-m", "compute.virt.fake_job", spec_path],
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=os.path.dirname(os.path.dirname(
                                    os.path.dirname(os.path.abspath(__file__)))))
        job = FileJob(spec["source"], spec["host_dir"], spec["instance"]["uuid"], proc)
        # Wait until the runner has written its first state, so a look at the
        # job right after start sees it running.
        deadline = time.monotonic() + 30
        while _read_json(state_path) is None and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        return job
    job = ThreadJob(Runner(spec, in_process=True))
    with _thread_jobs_lock:
        _thread_jobs[os.path.abspath(spec["host_dir"]), spec["instance"]["uuid"]] = job
    job.start()
    return job


# Jobs run by threads of this process, so that an agent restarted inside the
# same process (godwit-all's tests) finds the one its predecessor started.
_thread_jobs = {}
_thread_jobs_lock = threading.Lock()


def find(host, host_root, instance_uuid):
    """The job of ``instance_uuid`` still running on this host (a FileJob), or None."""
    with _thread_jobs_lock:
        job = _thread_jobs.get((os.path.abspath(host_root), instance_uuid))
    if job is not None and not job.wait(0):
        return job
    state_path, _ = job_paths(host_root, instance_uuid)
    st = _read_json(state_path)
    if not st or st.get("state") != "running" or not pid_alive(st.get("pid")) \
            or st.get("in_process"):
        return None   # over, or run by a thread of a process that is gone
    return FileJob(host, host_root, instance_uuid)


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    with open(argv[0]) as f:
        spec = json.load(f)
    Runner(spec, in_process=False).run()


if __name__ == "__main__":
    main()
