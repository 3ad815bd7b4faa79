"""The test kit's pieces that need no cloud: fault strings, waits, the entry point."""

import time
from importlib import metadata

import pytest

import godwit.testkit as kit
from godwit.testkit import fault, wait_for


def test_fault_strings():
    assert fault("pre_live_migration", "fail") == "pre_live_migration:fail"
    assert fault("live_migration", "delay", 0.5) == "live_migration:delay:0.5"
    assert fault("spawn", "fail", instance="abc", once=True) == "spawn@abc:fail::once"
    with pytest.raises(ValueError):
        fault("spawn", "explode")


def test_wait_returns_as_soon_as_true():
    start = time.monotonic()
    ready_at = start + 0.05
    assert wait_for("a moment", lambda: time.monotonic() >= ready_at and "ok") == "ok"
    # Intervals grow to 20 ms at most: seen well within that after it is true.
    assert time.monotonic() - ready_at < 0.04


def test_wait_times_out_with_what_it_waited_for():
    with pytest.raises(AssertionError, match="waiting for nothing"):
        wait_for("nothing", lambda: None, timeout=0.05)


def test_public_names_and_version():
    assert kit.KIT_VERSION == "1.2"      # 1.1 added the process cloud, 1.2 older agents
    assert {"ProcessCloud", "FakeCloud"} <= set(kit.__all__)
    for name in kit.__all__:
        assert getattr(kit, name) is not None
    with pytest.raises(AttributeError):
        kit.no_such_name  # noqa: B018


def test_plugin_is_registered_by_the_entry_point():
    eps = metadata.entry_points(group="pytest11")
    assert any(ep.name == "godwit" and ep.value == "godwit.testkit.plugin" for ep in eps)
