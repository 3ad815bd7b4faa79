"""The fake hypervisor's migration job (compute.virt.fake_job).

The simulated transfer honours the tuning the monitor applies, whether the
job runs in a thread of the agent (:class:`ThreadJob` over a
:class:`Runner`) or in a process of its own that is watched and steered only
through its files (:class:`FileJob`).
"""

import json
import os
import time

import pytest

from compute.fake_host import FakeHost
from compute.virt import fake, fake_job
from godwit import conf as godwit_conf
from godwit import exception, states

MIB = 1024 * 1024
UUID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hosts_path(tmp_path):
    return str(tmp_path / "hosts")


def boot(hosts_path, memory_mb=64, host="src"):
    """A running guest's domain record on ``host``, as FakeDriver.spawn writes it."""
    FakeHost(hosts_path, host).put("domains", UUID, {
        "uuid": UUID, "instance_uuid": UUID, "name": "vm", "memory_mb": memory_mb,
        "vcpus": 1, "power_state": states.RUNNING, "persistent": True, "disk": "/nowhere"})
    return {"uuid": UUID, "memory_mb": memory_mb}


def make_spec(hosts_path, instance, network_mb=1024, dirty_rate_mb=0, **params):
    """The spec FakeDriver.live_migration hands fake_job.start."""
    instances = os.path.join(os.path.dirname(hosts_path), "instances")
    return {"migration_id": 7, "source": "src", "dest": "dst", "hosts_path": hosts_path,
            "host_dir": FakeHost(hosts_path, "src").root, "instance": instance,
            "source_instances_path": instances, "dest_instances_path": instances,
            "block_migration": False, "disk_total": 0,
            "params": dict({"bandwidth_mib": 0, "max_downtime_ms": 50}, **params),
            "network_mb": network_mb, "dirty_rate_mb": dirty_rate_mb, "faults": []}


def thread_job(spec):
    job = fake_job.ThreadJob(fake_job.Runner(spec, in_process=True))
    job.start()
    return job


def read_json(path):
    with open(path) as f:
        return json.load(f)


def domain(hosts_path, host):
    return FakeHost(hosts_path, host).get("domains", UUID)


def assert_moved(hosts_path, power_state=states.RUNNING):
    assert domain(hosts_path, "src") is None
    arrived = domain(hosts_path, "dst")
    assert arrived is not None
    assert (arrived["incoming"], arrived["power_state"]) == (False, power_state)


def assert_stayed(hosts_path):
    stayed = domain(hosts_path, "src")
    assert stayed is not None and not stayed.get("switched_out")
    assert stayed["power_state"] == states.RUNNING
    assert domain(hosts_path, "dst") is None     # the incoming shell went with the job


# --------------------------------------------------------------- thread runner
def test_bandwidth_cap_slows_the_transfer(hosts_path):
    spec = make_spec(hosts_path, boot(hosts_path, memory_mb=64), bandwidth_mib=128)
    start = time.monotonic()
    job = thread_job(spec)
    assert job.stats()["bandwidth"] == 128 * MIB
    assert job.wait(10)
    job.result()
    # 64 MiB at 128 MiB/s needs about half a second; uncapped it would take 60 ms.
    assert time.monotonic() - start >= 0.4
    assert_moved(hosts_path)


def test_set_max_speed_changes_the_rate_mid_flight(hosts_path):
    spec = make_spec(hosts_path, boot(hosts_path, memory_mb=256), bandwidth_mib=16)
    start = time.monotonic()
    job = thread_job(spec)
    assert job.stats()["bandwidth"] == 16 * MIB
    assert not job.wait(0.2)          # 256 MiB at 16 MiB/s: 16 s
    job.set_max_speed(0)  # lift the cap: the fake network's 1024 MiB/s applies
    assert job.stats()["bandwidth"] == 1024 * MIB
    assert job.wait(5)
    job.result()
    assert time.monotonic() - start < 5
    assert_moved(hosts_path)


def test_a_guest_dirtying_faster_than_the_link_never_converges_until_paused(hosts_path):
    job = thread_job(make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048))
    assert not job.wait(0.5)
    assert job.stats()["memory_remaining"] > 0
    assert domain(hosts_path, "dst")["incoming"] is True   # the destination's shell
    job.pause()
    assert job.wait(5)
    job.result()
    assert job.stats()["paused"] is True
    assert_moved(hosts_path, power_state=states.PAUSED_POWER)


def test_raising_the_allowed_downtime_lets_the_job_switch_over(hosts_path):
    # 64 MiB at 1024 MiB/s stops the guest for 62.5 ms: more than the 50 ms allowed.
    job = thread_job(make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048))
    assert not job.wait(0.5)
    job.set_max_downtime(100)
    assert job.wait(5)
    job.result()
    assert job.stats()["paused"] is False
    assert_moved(hosts_path)


def test_abort_keeps_the_guest_on_the_source(hosts_path):
    job = thread_job(make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048))
    job.abort()
    assert job.wait(5)
    with pytest.raises(exception.HypervisorError, match="cancelled"):
        job.result()
    assert_stayed(hosts_path)


def test_find_returns_a_running_thread_job_and_nothing_once_it_ended(hosts_path):
    spec = make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048)
    job = fake_job.start(spec, "thread")
    assert isinstance(job, fake_job.ThreadJob)
    try:
        assert fake_job.find("src", spec["host_dir"], UUID) is job
    finally:
        job.pause()
    assert job.wait(5)
    job.result()
    assert fake_job.find("src", spec["host_dir"], UUID) is None


def test_the_driver_builds_a_spec_the_runner_takes(tmp_path):
    conf = godwit_conf.new_conf()
    conf([])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("migration_bandwidth_mb", 1024, group="fake")
    conf.set_override("migration_job_runner", "thread", group="fake")
    driver = fake.FakeDriver(conf, "src", str(tmp_path / "instances"))
    try:
        instance = {"uuid": UUID, "display_name": "vm", "memory_mb": 64, "vcpus": 1,
                    "root_gb": 1, "ephemeral_gb": 0}
        driver.spawn(instance, [], [])
        job = driver.live_migration(instance, "dst",
                                    {"dest_instances_path": driver.instances_path,
                                     "is_shared_instance_path": True, "migration_id": 3},
                                    {"bandwidth_mib": 128, "max_downtime_ms": 50})
        assert isinstance(job, fake_job.ThreadJob)
        assert job.stats()["bandwidth"] == 128 * MIB
        assert job.wait(10)
        job.result()
        assert driver.fake.get("domains", UUID) is None
        assert FakeHost(conf.fake.hosts_path, "dst").get("domains", UUID) is not None
    finally:
        driver.cleanup_host()


# -------------------------------------------------------------- process runner
@pytest.fixture
def process_jobs():
    """Jobs started as processes; any still running at the end is killed (by its pid)."""
    started = []
    yield started
    for job in started:
        if job.process is not None and job.process.poll() is None:
            job.process.kill()
            job.process.wait(10)


def start_process(spec, process_jobs):
    job = fake_job.start(spec, "process")
    process_jobs.append(job)
    assert isinstance(job, fake_job.FileJob) and job.process is not None
    # The job is watched only through its files: find() knows it by them alone.
    watched = fake_job.find("src", spec["host_dir"], UUID)
    assert isinstance(watched, fake_job.FileJob) and watched.process is None
    state = read_json(watched.state_path)
    assert state["pid"] == job.process.pid and state["in_process"] is False
    return job, watched


def test_a_process_job_steered_through_its_files_completes(hosts_path, process_jobs):
    spec = make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048)
    job, watched = start_process(spec, process_jobs)
    assert not watched.wait(0.5)       # it cannot converge on its own
    assert watched.stats()["memory_remaining"] > 0
    assert domain(hosts_path, "dst")["incoming"] is True

    watched.set_max_downtime(100)      # through the control file
    assert watched.wait(10)
    watched.result()
    assert_moved(hosts_path)
    assert read_json(watched.state_path)["state"] == "completed"
    assert job.wait(10)                # the process handle sees the same end
    job.result()
    assert job.process.poll() == 0
    assert fake_job.find("src", spec["host_dir"], UUID) is None


def test_a_process_job_aborted_through_its_control_file_fails(hosts_path, process_jobs):
    spec = make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048)
    job, watched = start_process(spec, process_jobs)
    assert not watched.wait(0.3)
    assert domain(hosts_path, "dst")["incoming"] is True

    watched.abort()
    assert read_json(watched.control_path) == {"abort": True}
    assert watched.wait(10)
    with pytest.raises(exception.HypervisorError, match="cancelled"):
        watched.result()
    state = read_json(watched.state_path)
    assert state["state"] == "failed" and state["error"]["cancelled"] is True
    assert_stayed(hosts_path)
    assert job.wait(10)
    assert job.process.poll() == 0


def test_a_process_job_that_died_mid_transfer_is_seen_failed(hosts_path, process_jobs):
    """The runner's process is killed before the switch-over: whoever watches
    the files sees the job over, and the guest still on the source."""
    spec = make_spec(hosts_path, boot(hosts_path), dirty_rate_mb=2048)
    job, watched = start_process(spec, process_jobs)
    assert not watched.wait(0.3)
    job.process.kill()
    job.process.wait(10)
    assert watched.wait(5)
    with pytest.raises(exception.HypervisorError, match="ended before the switch-over"):
        watched.result()
    stayed = domain(hosts_path, "src")
    assert stayed is not None and not stayed.get("switched_out")
    assert domain(hosts_path, "dst")["incoming"] is True   # a shell for the rollback to clear
    assert fake_job.find("src", spec["host_dir"], UUID) is None
