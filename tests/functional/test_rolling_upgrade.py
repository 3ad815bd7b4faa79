"""A rolling upgrade: a conductor of this release drives compute agents of an
earlier one (docs/upgrades.md).

For every older compute RPC version this release still serves
(``compute.rpcapi.INTERFACE.older()``: 2.0 today; a 2.2 adds 2.1 here by
itself), the agents serve only that version (the test kit's older agents:
their RPC target says that version, so oslo.messaging refuses anything newer
as a real older agent's does, and they register as agents of their release
did: a 2.0 agent without its version, which auto counts as the oldest). The
conductor, capped by ``[upgrade_levels] compute = auto`` (read from the
services table) or pinned to the old version, runs a live migration, a cold
migration and a resize; what each flow sent is read from the agents' own log
of the messages they received (method, version on the wire), and the dry run
shows what the conductor does without the newer call. Then the agents are
upgraded one by one: ``auto`` moves to the newest version once the last old
agent is gone, without restarting the conductor, and the newer call goes out;
a pinned conductor stays where it was pinned.
"""

import os
import subprocess
import sys

import oslo_messaging as messaging
import pytest

from compute import rpcapi as compute_rpcapi
from conductor import rpcapi as conductor_rpcapi
from godwit import context as godwit_context
from godwit import rpc, states, upgrade
from godwit.testing import SETTLED_COLD, APIError
from godwit.testkit import agents

HOSTS = ("compute1", "compute2", "compute3")
OLDER = compute_rpcapi.INTERFACE.older()
NEWEST = compute_rpcapi.VERSION
ESTIMATE = "estimate_live_migration"
# A live migration takes about 2 s of simulated transfer: time enough for the
# monitor's steering calls to show on the wire, and a dry run that can predict.
SLOW = {"fake.migration_bandwidth_mb": 256, "fake.migration_dirty_rate_mb": 0,
        "libvirt.live_migration_monitor_interval": 0.05}

LIVE_STEPS = {"check_can_live_migrate_destination", "check_can_live_migrate_source",
              "pre_live_migration", "live_migration_start",
              "post_live_migration_at_source", "post_live_migration_at_destination"}
COLD_STEPS = {"prep_resize", "resize_instance", "finish_resize", "confirm_resize"}


def test_older_versions_come_from_the_history():
    assert OLDER == compute_rpcapi.HISTORY[:-1] and NEWEST not in OLDER
    assert "2.0" in OLDER                      # until 2.0 is dropped (docs/upgrades.md)


def marks(cloud):
    return {h: len(cloud.rpc_calls(h)) for h in HOSTS}


def sent_since(cloud, mark):
    """{(method, version)} every agent received since ``mark``."""
    return {call for h in HOSTS for call in cloud.rpc_calls(h)[mark[h]:]}


def flows(cloud, dry_run=True):
    """A live migration, a cold migration and a resize (each confirmed), then a
    dry run; returns what went on the wire for each and the dry run's answer."""
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    paths = {}

    mark = marks(cloud)
    c.live_migrate(sid, host="compute2")
    assert c.wait_migration(sid)["status"] == "completed"
    assert c.server(sid)["OS-EXT-SRV-ATTR:host"] == "compute2"
    paths["live migration"] = sent_since(cloud, mark)

    for flow, body, host, ram in (("cold migration", {"migrate": {"host": "compute3"}},
                                   "compute3", 512),
                                  ("resize", {"resize": {"flavorRef": "2"}}, None, 2048)):
        mark = marks(cloud)
        (name, args), = body.items()
        c.action(sid, name, args)
        m = c.wait_migration(sid, until=SETTLED_COLD)
        assert m["status"] == "finished", (flow, m)
        c.wait_vm(sid, "VERIFY_RESIZE")
        c.action(sid, "confirmResize", expect=204)
        assert c.wait_migration(sid)["status"] == "confirmed", flow
        server = c.wait_vm(sid, "ACTIVE")
        assert server["flavor"]["ram"] == ram
        if host:
            assert server["OS-EXT-SRV-ATTR:host"] == host
        paths[flow] = sent_since(cloud, mark)

    source = c.server(sid)["OS-EXT-SRV-ATTR:host"]
    if not dry_run:
        return paths, None, sid, source
    target = next(h for h in HOSTS if h != source)
    mark = marks(cloud)
    dry = c.post(f"/servers/{sid}/live-migration-dry-run", {"host": target},
                 expect=200)["dry_run"]
    paths["dry run"] = sent_since(cloud, mark)
    return paths, dry, sid, source


def show(label, paths, dry):
    """What each flow used, for a reader of the test's output (pytest -s)."""
    print(f"\n{label}")
    for flow, calls in paths.items():
        versions = sorted({v for _, v in calls}, key=upgrade.parse)
        print(f"  {flow:15} {len(calls):2} methods, on the wire as {', '.join(versions)}"
              f"{'; ' + ESTIMATE if any(m == ESTIMATE for m, _ in calls) else ''}")
    print(f"  dry run: prediction {dry['hosts'][0]['prediction']}, "
          f"no estimate because: {dry.get('no_estimate_because')}")


def compute_versions(cloud):
    return {s["host"]: s["rpc_version"]
            for s in cloud.db.service_list(binary=states.SERVICE_COMPUTE)}


def conductor_cap(cloud):
    return cloud.conductor.manager.compute_cap.value


@pytest.mark.parametrize("level", ["auto", "pinned"])
@pytest.mark.parametrize("old", OLDER)
def test_every_move_with_agents_of_an_older_release(cloud_factory, tmp_path, old, level):
    paths_of = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths_of,
                          compute_rpc_version=old,
                          **dict(SLOW, **{"upgrade_levels.compute":
                                          "auto" if level == "auto" else old}))
    # The agents are old ones. They registered as agents of their release did:
    # with their version if that release recorded it, else without (auto counts
    # that as the oldest served). And they refuse a newer call as such an agent does.
    recorded = agents.recorded(old)
    assert compute_versions(cloud) == dict.fromkeys(HOSTS, old if recorded else None)
    assert conductor_cap(cloud) == old
    if level == "auto":
        # Each agent learnt its own caps from the conductor's answer.
        assert {cloud.computes[h].manager.compute_cap.value for h in HOSTS} == {old}
    newer = compute_rpcapi.HISTORY[compute_rpcapi.HISTORY.index(old) + 1]
    client = rpc.get_client(rpc.get_transport(cloud.conf, cloud.transport_url), "compute",
                            version_cap=NEWEST, timeout=10)
    with pytest.raises(messaging.RemoteError) as refused:
        client.prepare(server="compute1", version=newer).call(
            godwit_context.get_admin_context(), "ping")
    assert refused.value.exc_type == "UnsupportedVersion"

    paths, dry, sid, source = flows(cloud)
    show(f"compute agents serving {old}, conductor [upgrade_levels] compute = "
         f"{'auto' if level == 'auto' else old}", paths, dry)
    for flow, calls in paths.items():
        # Nothing newer than the agents serve went out; every call as the
        # version that introduced it.
        assert {v for _, v in calls} <= set(compute_rpcapi.HISTORY[:OLDER.index(old) + 1]), \
            (flow, calls)
        assert all(compute_rpcapi.ADDED_IN.get(m, compute_rpcapi.BASE_VERSION) == v
                   for m, v in calls), (flow, calls)
    assert LIVE_STEPS <= {m for m, _ in paths["live migration"]}
    assert COLD_STEPS <= {m for m, _ in paths["cold migration"]}
    assert COLD_STEPS <= {m for m, _ in paths["resize"]}
    assert {"check_can_live_migrate_destination",
            "check_can_live_migrate_source"} <= {m for m, _ in paths["dry run"]}
    assert dry["hosts"][0]["accepted"]
    old_can_estimate = upgrade.parse(old) >= upgrade.parse(compute_rpcapi.ADDED_IN[ESTIMATE])
    if old_can_estimate:
        # Agents of a release that has the estimate give it.
        assert ESTIMATE in {m for m, _ in paths["dry run"]}
        assert dry["hosts"][0]["prediction"]["duration_s"] > 0
    else:
        # The dry run does without the estimate the agents cannot give: every
        # check, no prediction, and why.
        assert ESTIMATE not in {m for m, _ in paths["dry run"]}
        assert dry["hosts"][0]["prediction"] is None
        assert dry["estimate"] is None
        assert f"compute RPC up to {old}" in dry["no_estimate_because"]

    # The upgrade: one agent after the other becomes this release's.
    for i, host in enumerate(HOSTS):
        cloud.stop_host(host)
        cloud.start_host(host, rpc_version=None)
        assert compute_versions(cloud)[host] == NEWEST
        last = i == len(HOSTS) - 1
        # auto moves when the last old agent is gone, without a restart; a pin stays.
        assert conductor_cap(cloud) == (NEWEST if last and level == "auto" else old)

    mark = marks(cloud)
    target = next(h for h in HOSTS if h != source)
    dry = cloud.client.post(f"/servers/{sid}/live-migration-dry-run", {"host": target},
                            expect=200)["dry_run"]
    sent = sent_since(cloud, mark)
    show(f"after the upgrade, [upgrade_levels] compute = {level}", {"dry run": sent}, dry)
    if level == "auto" or old_can_estimate:
        assert (ESTIMATE, compute_rpcapi.ADDED_IN[ESTIMATE]) in cloud.rpc_calls(source)[
            mark[source]:]
        assert dry["hosts"][0]["prediction"]["duration_s"] > 0
    else:
        assert ESTIMATE not in {m for m, _ in sent}
        assert dry["hosts"][0]["prediction"] is None


def test_an_api_on_auto_follows_the_conductors_in_the_services_table(cloud_factory):
    """[upgrade_levels] conductor = auto in the API: while a conductor of an
    older release is up (its record has no RPC version), the API does without
    the 2.1 dry run (503, upgrade the conductors first); once it is gone or
    upgraded, the API sends it again, without a restart."""
    cloud = cloud_factory(**{"upgrade_levels.conductor": "auto"})
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cap = cloud.api.api.conductor.cap
    assert cap.current() == conductor_rpcapi.VERSION
    cap.refresh_after = 0          # read at every newer call, not every 30 s
    cloud.db.service_register("conductor-old", states.SERVICE_CONDUCTOR, "conductor", "0.9")
    with pytest.raises(APIError) as refused:
        c.post(f"/servers/{sid}/live-migration-dry-run", {"host": "compute2"}, expect=200)
    assert refused.value.status == 503 and "upgrade the conductors" in refused.value.message
    assert cap.current() == conductor_rpcapi.BASE_VERSION
    # That conductor is upgraded: it registers with its version.
    cloud.db.service_register("conductor-old", states.SERVICE_CONDUCTOR, "conductor", "1.0",
                              rpc_version=conductor_rpcapi.VERSION)
    dry = c.post(f"/servers/{sid}/live-migration-dry-run", {"host": "compute2"},
                 expect=200)["dry_run"]
    assert dry["hosts"][0]["accepted"]
    assert cap.current() == conductor_rpcapi.VERSION


@pytest.mark.parametrize("old", conductor_rpcapi.INTERFACE.older())
def test_every_move_with_new_agents_and_a_conductor_of_an_older_release(
        cloud_factory, tmp_path, old):
    """The other direction: agents of this release appear under a conductor
    that serves only an older conductor RPC version (conductors go first, but an
    old conductor must not break when new agents appear). The agents' 2.2
    registration is refused and they register as 2.0; every flow completes with
    every message to the conductor at a version it serves; the API on auto does
    without the dry run the conductor's record cannot promise."""
    paths_of = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths_of, conductor_rpc_version=old,
                          **dict(SLOW, **{"upgrade_levels.conductor": "auto"}))
    versions = {s["host"]: s["rpc_version"] for s in cloud.db.service_list()}
    conductor_host = cloud.conductor.server_name
    assert versions[conductor_host] == (old if agents.recorded(old, "conductor") else None)
    # Each agent tried 2.2, was refused, and registered as 2.0 without its version.
    assert [v for m, v in cloud.conductor_rpc_calls() if m == "service_report"] == \
        ["2.2", conductor_rpcapi.BASE_VERSION] * len(HOSTS)
    assert {versions[h] for h in HOSTS} == {None}

    mark = len(cloud.conductor_rpc_calls())
    paths, _dry, sid, _source = flows(cloud, dry_run=False)
    received = set(cloud.conductor_rpc_calls()[mark:])
    print(f"\nconductor serving {old}: it received "
          f"{', '.join(sorted(f'{m} {v}' for m, v in received))}")
    assert {"migration_job_ended", "instance_update", "action_event"} <= \
        {m for m, _ in received}
    assert all(conductor_rpcapi.ADDED_IN.get(m, conductor_rpcapi.BASE_VERSION) == v
               for m, v in received), received
    assert LIVE_STEPS <= {m for m, _ in paths["live migration"]}
    assert COLD_STEPS <= {m for m, _ in paths["resize"]}
    with pytest.raises(APIError) as refused:
        cloud.client.post(f"/servers/{sid}/live-migration-dry-run", {}, expect=200)
    assert refused.value.status == 503 and "upgrade the conductors" in refused.value.message
    assert "live_migration_dry_run" not in {m for m, _ in cloud.conductor_rpc_calls()}


@pytest.mark.parametrize("binary, option, value", [("godwit-conductor", "compute", "3.7"),
                                                    ("godwit-compute", "conductor", "banana")])
def test_a_service_with_a_bad_upgrade_level_does_not_start(tmp_path, binary, option, value):
    """The real console script: one line on stderr saying what is allowed, exit
    status 2, before it opens anything."""
    conf = tmp_path / "godwit.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\ntransport_url = "
                    f"rabbit://nobody:nothing@127.0.0.1:1/\n[upgrade_levels]\n{option} = {value}\n")
    script = os.path.join(os.path.dirname(sys.executable), binary)
    r = subprocess.run([script, "--config-file", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    history = (compute_rpcapi if option == "compute" else conductor_rpcapi).HISTORY
    assert (f"{binary}: error: [upgrade_levels] {option} = '{value}' is not allowed: give "
            f"'auto'") in r.stderr
    assert f"({', '.join(history)})" in r.stderr
