"""The fake driver's simulated transfer honours the tuning the monitor applies."""

import time

import pytest

from compute.virt import fake
from godwit import conf as godwit_conf

MIB = 1024 * 1024


@pytest.fixture
def driver(tmp_path):
    conf = godwit_conf.new_conf()
    conf([])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("migration_bandwidth_mb", 1024, group="fake")
    drv = fake.FakeDriver(conf, "src", str(tmp_path / "instances"))
    yield drv
    drv.cleanup_host()


def boot(driver, memory_mb=64):
    instance = {"uuid": "11111111-2222-3333-4444-555555555555", "display_name": "vm",
                "memory_mb": memory_mb, "vcpus": 1, "root_gb": 1, "ephemeral_gb": 0}
    driver.spawn(instance, [], [])
    return instance


def migrate(driver, instance, **params):
    params = dict({"bandwidth_mib": 0, "max_downtime_ms": 50}, **params)
    return driver.live_migration(instance, "dst", {"dest_instances_path": driver.instances_path,
                                                   "is_shared_instance_path": True}, params)


def test_bandwidth_cap_slows_the_transfer(driver):
    instance = boot(driver, memory_mb=64)
    start = time.monotonic()
    job = migrate(driver, instance, bandwidth_mib=128)
    assert job.stats()["bandwidth"] == 128 * MIB
    assert job.wait(10)
    job.result()
    # 64 MiB at 128 MiB/s needs about half a second; uncapped it would take 60 ms.
    assert time.monotonic() - start >= 0.4
    assert driver.fake.get("domains", instance["uuid"]) is None


def test_set_max_speed_changes_the_rate_mid_flight(driver):
    instance = boot(driver, memory_mb=256)
    job = migrate(driver, instance, bandwidth_mib=16)
    assert job.stats()["bandwidth"] == 16 * MIB
    job.set_max_speed(0)  # lift the cap: the fake network's 1024 MiB/s applies
    assert job.stats()["bandwidth"] == 1024 * MIB
    assert job.wait(5)
    job.result()


def test_a_guest_dirtying_faster_than_the_link_never_converges_until_paused(driver):
    driver.conf.set_override("migration_dirty_rate_mb", 2048, group="fake")
    instance = boot(driver, memory_mb=64)
    job = migrate(driver, instance)
    assert not job.wait(0.5)
    assert job.stats()["memory_remaining"] > 0
    job.pause()
    assert job.wait(5)
    job.result()
    assert job.stats()["paused"] is True


def test_abort_keeps_the_guest_on_the_source(driver):
    driver.conf.set_override("migration_dirty_rate_mb", 2048, group="fake")
    instance = boot(driver)
    job = migrate(driver, instance)
    job.abort()
    assert job.wait(5)
    with pytest.raises(Exception, match="cancelled"):
        job.result()
    assert driver.fake.get("domains", instance["uuid"]) is not None
