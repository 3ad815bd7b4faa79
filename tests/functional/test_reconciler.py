"""The reconciler against fake hosts: planted orphans of deleted and of moved guests
are each reported, removed with fix, and nothing else changes.

Every kind a host can hold is planted: a domain, the instance directory, a
cold migration's ``<uuid>_resize`` directory, a VIF, a volume connection, a
filter. Also what must not be removed: a running domain of a deleted guest
(reported, left alone), a directory of an instance the database does not
know (reported, left for an operator), and everything of the guests that
live where they are. The counts are in docs/crash-safety.md.
"""

import copy
import json
import os
import uuid

import pytest

from conductor import reconciler
from godwit import context as godwit_context
from godwit import states
from godwit.testing import fake_host

HOSTS = ("compute1", "compute2", "compute3")
VOLUME = "8c1d1f6a-0a4b-4b55-9a3e-1f2a7c3b9d10"
PLANTED = ("dirs", "domains", "filters", "vifs", "volumes")


@pytest.fixture
def cloud(cloud_factory, tmp_path):
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths)
    cloud.paths = paths
    return cloud


def plant(cloud, host, sid, power=states.SHUTDOWN, resize=True):
    """Every kind of record and file of ``sid`` on ``host``, as a move or a
    delete interrupted at the worst moment would leave them."""
    fh = fake_host(cloud.conf.fake.hosts_path, host)
    vifs = cloud.db.vif_list(sid)
    fh.put("domains", sid, {"uuid": sid, "instance_uuid": sid, "power_state": power,
                            "persistent": True})
    fh.put("vifs", vifs[0]["uuid"], {"instance_uuid": sid, "address": vifs[0]["address"]})
    fh.put("volumes", f"{sid}-{VOLUME}", {"instance_uuid": sid, "volume_id": VOLUME,
                                          "driver_volume_type": "fake", "host": host})
    fh.put("filters", sid, {"instance_uuid": sid, "rules": []})
    os.makedirs(os.path.join(cloud.paths[host], sid), exist_ok=True)
    if resize:
        os.makedirs(os.path.join(cloud.paths[host], sid + "_resize"), exist_ok=True)


def state_of(cloud):
    """Every record and instance file on every host (what 'nothing else changes' compares)."""
    return {h: (copy.deepcopy(fake_host(cloud.conf.fake.hosts_path, h).snapshot()),
                sorted(os.listdir(cloud.paths[h]))) for h in HOSTS}


def reconcile(cloud, host, fix=False):
    rpc = cloud.conductor.manager.compute_rpc
    return reconciler.reconcile(cloud.db, rpc, host, fix=fix,
                                ctxt=godwit_context.get_admin_context())


def test_orphans_of_moved_and_deleted_guests(cloud):
    c = cloud.client
    volume_bdm = [{"boot_index": 0, "uuid": VOLUME, "source_type": "volume",
                   "destination_type": "volume"}]
    moved = c.create_server("moved", host="compute1", block_device_mapping_v2=volume_bdm)["id"]
    c.live_migrate(moved, host="compute2")
    assert c.wait_migration(moved)["status"] == "completed"
    deleted = c.create_server("deleted", host="compute3",
                              block_device_mapping_v2=volume_bdm)["id"]
    c.delete_server(deleted)
    running_deleted = c.create_server("deleted-running", host="compute3")["id"]
    c.delete_server(running_deleted)
    stays = c.create_server("stays", host="compute1")["id"]

    plant(cloud, "compute1", moved)
    plant(cloud, "compute3", deleted)
    fake_host(cloud.conf.fake.hosts_path, "compute3").put(
        "domains", running_deleted, {"uuid": running_deleted, "instance_uuid": running_deleted,
                                     "power_state": states.RUNNING, "persistent": True})
    stranger = str(uuid.uuid4())
    os.makedirs(os.path.join(cloud.paths["compute3"], stranger))
    before = state_of(cloud)

    # Reported, and nothing changes without fix.
    found = {h: reconcile(cloud, h) for h in HOSTS}
    assert state_of(cloud) == before
    assert found["compute2"] == []   # the moved guest lives there: nothing of it is orphaned
    kinds = lambda orphans, sid: sorted(o["kind"] for o in orphans  # noqa: E731
                                        if o["instance_uuid"] == sid)
    assert kinds(found["compute1"], moved) == sorted(PLANTED + ("dirs",))
    assert all("lives on compute2" in o["why"] for o in found["compute1"])
    assert not [o for o in found["compute1"] if o["instance_uuid"] == stays]
    assert kinds(found["compute3"], deleted) == sorted(PLANTED + ("dirs",))
    assert all("deleted" in o["why"] for o in found["compute3"]
               if o["instance_uuid"] == deleted)
    running = [o for o in found["compute3"] if o["instance_uuid"] == running_deleted]
    assert len(running) == 1 and not running[0]["removable"] and "runs" in running[0]["why"]
    unknown = [o for o in found["compute3"] if o["instance_uuid"] == stranger]
    assert len(unknown) == 1 and not unknown[0]["removable"], unknown

    # Removed with fix: every planted orphan, and nothing else.
    fixed = {h: reconcile(cloud, h, fix=True) for h in HOSTS}
    removed = [o for orphans in fixed.values() for o in orphans if o["removed"]]
    assert len(removed) == 2 * (len(PLANTED) + 1), removed
    after = state_of(cloud)
    fh = fake_host(cloud.conf.fake.hosts_path, "compute1")
    assert fh.is_empty_for(moved)
    assert not [n for n in os.listdir(cloud.paths["compute1"]) if n.startswith(moved)]
    assert fake_host(cloud.conf.fake.hosts_path, "compute3").is_empty_for(deleted)
    assert after["compute2"] == before["compute2"]
    assert after["compute3"][0]["domains"][running_deleted]["power_state"] == states.RUNNING
    assert stranger in after["compute3"][1]
    for kind, records in before["compute1"][0].items():   # 'stays' untouched
        for key, rec in records.items():
            if key == stays or rec.get("instance_uuid") == stays:
                assert after["compute1"][0][kind][key] == rec
    # Nothing left to find but what is left alone on purpose.
    again = [o for h in HOSTS for o in reconcile(cloud, h)]
    assert sorted(o["instance_uuid"] for o in again) == sorted([running_deleted, stranger])


def test_an_agent_that_starts_removes_its_orphans_before_it_takes_work(cloud):
    c = cloud.client
    moved = c.create_server("moved", host="compute1")["id"]
    c.live_migrate(moved, host="compute2")
    assert c.wait_migration(moved)["status"] == "completed"
    plant(cloud, "compute1", moved)
    assert not fake_host(cloud.conf.fake.hosts_path, "compute1").is_empty_for(moved)
    cloud.stop_compute("compute1")
    cloud.start_compute("compute1")
    assert fake_host(cloud.conf.fake.hosts_path, "compute1").is_empty_for(moved)
    assert not [n for n in os.listdir(cloud.paths["compute1"]) if n.startswith(moved)]
    assert reconcile(cloud, "compute1") == []



def ledger_of(cloud, migration_id, host):
    return {e["kind"]: e["state"] for e in cloud.db.ledger(migration_id=migration_id, host=host)}


def arm(cloud, host, faults):
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root, "faults.json"),
              "w") as f:
        json.dump(faults, f)


def test_the_ledger_names_the_move_that_left_each_orphan(cloud):
    """A live migration whose rollback fails ends in error with its destination
    not cleaned: the ledger says what it may have left there, the reconciler
    names the move with each orphan, and what is removed, or found gone, is
    released. A move that completes releases all it held."""
    c = cloud.client
    done = c.create_server("done", host="compute1")["id"]
    c.live_migrate(done, host="compute2")
    m_done = c.wait_migration(done)
    assert m_done["status"] == "completed"
    held = ledger_of(cloud, m_done["id"], "compute2")
    assert set(held) >= {"claim", "instance_dir", "vifs", "filter", "domain"}, held
    assert set(held.values()) == {"released"}, held

    sid = c.create_server("broken", host="compute1")["id"]
    arm(cloud, "compute1", ["live_migration:fail"])
    arm(cloud, "compute2", ["rollback_live_migration_at_destination:fail"])
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    arm(cloud, "compute1", [])
    arm(cloud, "compute2", [])
    assert m["status"] == "error", m
    held = ledger_of(cloud, m["id"], "compute2")
    # The claim stops counting when the move ends; the rest stays recorded.
    assert held == {"claim": "released", "instance_dir": "present", "volumes": "present",
                    "vifs": "present", "filter": "present", "domain": "planned"}, held

    # The rollback removed the filter and the VIFs before its last part, the
    # directory, failed; no volume and no domain were made there.
    found = [o for o in reconcile(cloud, "compute2") if o["instance_uuid"] == sid]
    assert [(o["kind"], o["moves"]) for o in found] == [("dirs", [m["id"]])], found
    # Reading the host released what it no longer has.
    held = ledger_of(cloud, m["id"], "compute2")
    assert held == {"claim": "released", "instance_dir": "present", "volumes": "released",
                    "vifs": "released", "filter": "released", "domain": "released"}, held

    fixed = [o for o in reconcile(cloud, "compute2", fix=True) if o["instance_uuid"] == sid]
    assert len(fixed) == 1 and fixed[0]["removed"], fixed
    assert fake_host(cloud.conf.fake.hosts_path, "compute2").is_empty_for(sid)
    assert set(ledger_of(cloud, m["id"], "compute2").values()) == {"released"}
    assert c.server(sid)["OS-EXT-SRV-ATTR:host"] == "compute1"
