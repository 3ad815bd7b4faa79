"""The dry run of a live migration (Godwit extension POST
/servers/{id}/live-migration-dry-run, `godwit server live-migrate --dry-run`,
the controllers' live_migration_dry_run): every check against every candidate
or the named host, a prediction for each that accepts, and nothing changed."""

import contextlib
import io
import json
import os
from datetime import datetime

import oslo_messaging as messaging
import pytest

from api.client import shell
from godwit import controller, exception, rpc
from godwit.testing import APIError, Client

HOSTS = ("compute1", "compute2", "compute3")
SLOW = {"fake.migration_bandwidth_mb": 256, "fake.migration_dirty_rate_mb": 0,
        "libvirt.live_migration_monitor_interval": 0.05}


@pytest.fixture
def make_cloud(cloud_factory, tmp_path):
    def make(**options):
        paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
        cloud = cloud_factory(hosts=HOSTS, host_paths=paths, **options)
        cloud.paths = paths
        return cloud
    return make


def dry_run(c, sid, **body):
    return c.post(f"/servers/{sid}/live-migration-dry-run", body, expect=200)["dry_run"]


def everything(cloud, sid):
    """What a dry run must leave as it was: the server, its migrations and
    actions, every host's records and instance directory."""
    c = cloud.client
    s = c.server(sid)
    hosts = {}
    for h in HOSTS:
        handle = cloud.host(h)
        hosts[h] = (handle.domains(), handle.vifs(), handle.volume_connections(),
                    handle.filters(), sorted(os.listdir(cloud.paths[h]))
                    if os.path.isdir(cloud.paths[h]) else [])
    return (s["status"], s["OS-EXT-SRV-ATTR:host"], s["OS-EXT-STS:task_state"],
            c.migrations(instance_uuid=sid),
            c.get(f"/servers/{sid}/os-instance-actions")["instanceActions"],
            json.dumps(hosts, sort_keys=True, default=str))


def test_every_candidate_checked_predicted_and_nothing_changed(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.request("PUT", f"/os-services/{c.services()[2]['id']}",
              json={"status": "disabled", "disabled_reason": "maintenance"})
    before = everything(cloud, sid)

    r = dry_run(c, sid)
    assert (r["server"], r["source"], r["memory_mb"]) == (sid, "compute1", 512)
    assert r["estimate"]["bandwidth_mb_s"] == 256 and r["estimate"]["dirty_rate_mb_s"] == 0
    by_host = {h["host"]: h for h in r["hosts"]}
    disabled = c.services()[2]["host"]
    other = ({"compute2", "compute3"} - {disabled}).pop()
    assert by_host[other]["accepted"] and by_host[other]["storage"] == "block"
    assert not by_host[disabled]["accepted"] and "disabled" in by_host[disabled]["reason"]
    # 512 MiB, plus the 1 GiB root disk of a block migration, at 256 MiB/s.
    p = by_host[other]["prediction"]
    assert p["converges"] and p["duration_s"] == pytest.approx(6.0)
    assert everything(cloud, sid) == before

    # A named host: the same checks, only there.
    r = dry_run(c, sid, host=other, block_migration=True)
    assert [h["host"] for h in r["hosts"]] == [other] and r["hosts"][0]["accepted"]
    assert everything(cloud, sid) == before


def test_the_prediction_matches_the_move(cloud_factory):
    """On shared storage (the default cloud's hosts share their instance path)
    the prediction is memory over bandwidth; the move itself takes about that."""
    cloud = cloud_factory(**SLOW)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    r = dry_run(c, sid, host="compute2")
    [host] = r["hosts"]
    assert host["storage"] == "shared"
    predicted = host["prediction"]["duration_s"]
    assert predicted == pytest.approx(2.0)
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    entries = c.get(f"/servers/{sid}/migrations/{m['id']}/timeline")["timeline"]
    at = {e["name"]: e["at"] for e in entries if e["kind"] == "phase"}
    took = (datetime.fromisoformat(at["post-migrating"]) -
            datetime.fromisoformat(at["running"])).total_seconds()
    # The fake transfer advances by 10 ms sleeps: on a loaded machine (the whole
    # suite on 2 cores) each lasts longer and the move with it, never shorter.
    assert predicted * 0.8 <= took <= predicted * 2, (predicted, took)


def test_refusals_in_the_answer_and_of_the_request(cloud_factory):
    cloud = cloud_factory(**dict(SLOW, **{"fake.migration_dirty_rate_mb": 512}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.host("compute2").arm(f"check_can_live_migrate_destination@{sid}:fail")
    r = dry_run(c, sid)
    by_host = {h["host"]: h for h in r["hosts"]}
    assert not by_host["compute2"]["accepted"]
    assert "Injected fault" in by_host["compute2"]["reason"]
    # Dirtied faster than the network sends: accepted, but it would never converge.
    assert by_host["compute3"]["accepted"]
    assert by_host["compute3"]["prediction"]["converges"] is False
    [source] = dry_run(c, sid, host="compute1")["hosts"]
    assert not source["accepted"] and "already runs on" in source["reason"], source
    for body, status in (({"host": "bad host"}, 400), ({"block_migration": "maybe"}, 400),
                         ({"force": True}, 400)):
        with pytest.raises(APIError) as info:
            c.post(f"/servers/{sid}/live-migration-dry-run", body)
        assert info.value.status == status, (body, info.value)
    with pytest.raises(APIError) as info:
        dry_run(Client(c.url, user="someone", project="admin"), sid)
    assert info.value.status == 403
    with pytest.raises(APIError) as info:
        dry_run(c, "00000000-0000-4000-8000-000000000000")
    assert info.value.status == 404
    assert c.migrations(instance_uuid=sid) == []


def test_the_client_and_the_controllers_interface(cloud_factory):
    cloud = cloud_factory(**SLOW)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = shell.main(["--os-endpoint", cloud.api_url, "server", "live-migrate", sid,
                           "--dry-run", "-f", "json"])
    assert code == 0, err.getvalue()
    rows = json.loads(out.getvalue())
    assert {r["Host"]: r["Accepted"] for r in rows} == {"compute2": "yes", "compute3": "yes"}
    assert all(r["Duration"] == "2.0 s" for r in rows), rows
    assert "bandwidth 256 MiB/s" in err.getvalue()
    assert c.migrations(instance_uuid=sid) == []

    transport = rpc.get_transport(cloud.conf, cloud.transport_url)
    ctl = controller.ControllerClient(transport=transport)
    r = ctl.live_migration_dry_run(sid, host="compute3")
    assert r["hosts"][0]["accepted"] and r["hosts"][0]["prediction"]["duration_s"] == 2.0
    # A controller pinned to 1.0 (an older conductor) keeps its 1.0 calls and
    # refuses to send the 1.1 one.
    old = controller.ControllerClient(transport=transport, version_cap="1.0")
    assert old.migrations(sid) == []
    with pytest.raises(messaging.RPCVersionCapError):
        old.live_migration_dry_run(sid)
    with pytest.raises(exception.Forbidden):
        controller.ControllerClient(transport=transport, roles=["member"],
                                    project_id="admin").live_migration_dry_run(sid)


def test_a_conductor_pinned_to_compute_rpc_2_0_checks_but_cannot_predict(cloud_factory):
    cloud = cloud_factory(**dict(SLOW, **{"upgrade_levels.compute": "2.0"}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    r = dry_run(c, sid, host="compute2")
    assert r["hosts"][0]["accepted"] and r["hosts"][0]["prediction"] is None
    assert r["estimate"] is None and "2.0" in r["no_estimate_because"]
    # Everything else still goes out as 2.0: a live migration completes.
    c.live_migrate(sid, host="compute2")
    assert c.wait_migration(sid)["status"] == "completed"


def test_a_dry_runs_check_events_are_not_looked_up_again(make_cloud):
    """A dry run writes no action, so its hosts' check events find none. Events
    of a pre-check may come before their action (decision 34) and are looked up
    again every second, but not those of a request that ended without one."""
    import time

    from tests.unit.test_db_api import _Statements
    cloud = make_cloud()
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    assert sum(h["accepted"] for h in dry_run(c, sid)["hosts"]) == 2
    time.sleep(1.5)     # the events' first lookups, and any retry of one that came early
    with _Statements(cloud.db) as statements:
        time.sleep(3.0)
    lookups = [t for t in statements.texts if "FROM instance_actions" in t]
    assert lookups == [], lookups
