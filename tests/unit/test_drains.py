"""The durable side of a host drain (godwit.db.drains): one per host, the host
disabled with it, the report's order, cancel, leases and fencing.

Every test runs on SQLite, PostgreSQL and MariaDB (``any_db``).
"""

import datetime
import time

import pytest

from godwit import exception, states
from godwit.db import drains
from tests.unit.test_db_api import (  # noqa: F401 (the fixtures any_db uses)
    _flavor,
    _instance,
    _run_together,
    any_db,
    mariadb_url,
    sqlite_url,
)

OPTIONS = {"fallback": "skip", "on_cancel": "abort", "guest_timeout": 60, "context": "{}"}


@pytest.fixture
def db(any_db):  # noqa: F811 (the imported fixture)
    any_db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1")
    return any_db


def _service(db, host="h1"):
    return db.service_get_by_host(host)


def test_a_drain_disables_its_host_and_lists_its_guests_smallest_first(db):
    big, small = _flavor(db, "big", memory_mb=4096), _flavor(db, "small", memory_mb=512)
    fat = _instance(db, big, display_name="fat")
    thin_disk = _instance(db, _flavor(db, "thin", memory_mb=512, root_gb=0),
                          display_name="thin")
    thin = _instance(db, small, display_name="tiny")
    _instance(db, small, host="h2")            # elsewhere: not the drain's
    _instance(db, small, deleted_at=datetime.datetime(2020, 1, 1))   # deleted

    d = db.drain_create("h1", OPTIONS)

    assert (d["host"], d["status"], d["epoch"], d["owner"]) == ("h1", "running", 0, None)
    assert [g["instance_uuid"] for g in d["report"]] == \
        [thin_disk["uuid"], thin["uuid"], fat["uuid"]]
    assert {g["state"] for g in d["report"]} == {"pending"}
    svc = _service(db)
    assert (svc["disabled"], svc["disabled_reason"]) == (True, f"drain {d['uuid']}")
    assert db.drain_get(d["uuid"]) == d


def test_one_running_drain_per_host_and_a_refusal_changes_nothing(db):
    first = db.drain_create("h1", OPTIONS)
    with pytest.raises(exception.Conflict) as e:
        db.drain_create("h1", OPTIONS)
    assert first["uuid"] in str(e.value)
    assert _service(db)["disabled_reason"] == f"drain {first['uuid']}"
    assert [d["uuid"] for d in db.drain_list(host="h1")] == [first["uuid"]]
    with pytest.raises(exception.NotFound):
        db.drain_create("nowhere", OPTIONS)
    # Cancelling still counts as running; once ended, the host may be drained again.
    db.drain_request_cancel(first["uuid"])
    with pytest.raises(exception.Conflict):
        db.drain_create("h1", OPTIONS)
    held = db.drain_take(first["uuid"], "c1", 60)
    db.drain_save(held, held["report"], drains.CANCELLED)
    again = db.drain_create("h1", OPTIONS)
    assert again["uuid"] != first["uuid"]


def test_two_drains_of_one_host_at_once_one_wins(db):
    results = _run_together(*[lambda: db.drain_create("h1", OPTIONS)] * 2)
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 1, results
    assert isinstance([r for r in results if not isinstance(r, dict)][0],
                      exception.Conflict), results
    assert len(db.drain_list(host="h1")) == 1


def test_cancel(db):
    d = db.drain_create("h1", OPTIONS)
    c = db.drain_request_cancel(d["uuid"])
    assert c["status"] == "cancelling" and c["cancel_requested_at"] is not None
    assert db.drain_request_cancel(d["uuid"])["cancel_requested_at"] == \
        c["cancel_requested_at"]
    with pytest.raises(exception.NotFound):
        db.drain_request_cancel("00000000-0000-0000-0000-000000000000")


def test_leases_and_fencing(db):
    d = db.drain_create("h1", OPTIONS)
    a = db.drain_take(d["uuid"], "c1", 60)
    assert (a["owner"], a["epoch"]) == ("c1", 1)
    assert db.drain_take(d["uuid"], "c2", 60) is None   # held by c1
    assert db.drain_renew(a, 60)["lease_until"] >= a["lease_until"]
    # c1 stops renewing: its lease runs out and c2 takes over; c1 is fenced.
    short = db.drain_take(d["uuid"], "c1", 0)
    assert short["epoch"] == 2
    time.sleep(0.01)
    b = db.drain_take(d["uuid"], "c2", 60)
    assert (b["owner"], b["epoch"]) == ("c2", 3)
    with pytest.raises(exception.ConcurrentUpdate):
        db.drain_save(short, [{"state": "moved"}])
    assert db.drain_renew(short, 60) is None
    # A cancel recorded meanwhile wins over the holder's decision to finish.
    db.drain_request_cancel(d["uuid"])
    with pytest.raises(exception.ConcurrentUpdate):
        db.drain_save(b, b["report"], drains.FINISHED)
    saved = db.drain_save(b, [])           # its report is still written
    assert saved["report"] == [] and saved["status"] == "cancelling"
    ended = db.drain_save(saved, [], drains.CANCELLED)
    assert (ended["status"], ended["owner"]) == ("cancelled", None)
    assert ended["finished_at"] is not None
    assert db.drains_active() == []


def test_the_guests_on_a_host_now(db):
    """What a running drain compares its report with (guests that arrived)."""
    small = _flavor(db, "small", memory_mb=512)
    first = _instance(db, small, display_name="first")
    _instance(db, small, host="h2")                                   # elsewhere
    _instance(db, small, deleted_at=datetime.datetime(2020, 1, 1))    # deleted
    d = db.drain_create("h1", OPTIONS)
    late = _instance(db, small, display_name="late")

    assert [i["uuid"] for i in db.drain_host_guests("h1")] == [first["uuid"], late["uuid"]]
    assert [g["instance_uuid"] for g in d["report"]] == [first["uuid"]]
    # The report's entries for them are made the same way as at the start.
    entry = drains.report_for(db.drain_host_guests("h1"))[1]
    assert (entry["instance_uuid"], entry["name"], entry["state"], entry["migrations"]) == \
        (late["uuid"], "late", "pending", [])
