"""The reconciler against a compute agent with real drivers: orphans of deleted and
of moved guests are each reported, removed with fix, and nothing else changes.

The cloud is the in-process one of the functional tests (conductor, API, database);
its host compute1 is an agent whose VIF, firewall and volume drivers are the real
linux_bridge (taps on Linux bridges in a network namespace of the test's own) or ovs
(ports on a bridge of the host tests' Open vSwitch), nftables (``inst-<uuid>``
chains in that namespace) and local_block (loop devices of files under the test's
directory); its virt driver stays the fake one. compute2, where the moved guest
goes, is a fake host. Guests are built, moved and deleted through the API, so the
agent's own build, migration clean-up and teardown make and remove the real things;
the orphans are then planted through the same drivers, as a move or a delete
interrupted at the worst moment would leave them. The reconciler runs its own code
path (conductor.reconciler.reconcile over RPC to the agent). The counts are in
docs/crash-safety.md.
"""

import uuid

import pytest

from compute import cmd as compute_cmd
from compute.firewall import nftables
from compute.vif import common
from compute.volume.local_block import loop_devices_of
from conductor import reconciler
from godwit import context as godwit_context
from godwit import rpc
from godwit.testkit import cloud as testkit_cloud
from tests.host.conftest import require_host_plumbing, run

HOSTS = ("compute1", "compute2")
REAL = "compute1"
PLANTED = ("filters", "vifs", "volumes")


@pytest.fixture(params=["linux_bridge", "ovs"])
def real_cloud(request, undo, net, cloud_factory, tmp_path):
    """The cloud, with compute1's agent restarted on the real drivers."""
    require_host_plumbing("ip", "nft", "losetup")
    ns = net.netns("H")
    vif_options = {"vif_bridge.netns": ns}
    if request.param == "ovs":
        ovs = request.getfixturevalue("ovs")
        bridge = net.name("i")
        undo.push(ovs.vsctl, "--if-exists", "del-br", bridge, check=False)
        vif_options = {"os_vif_ovs.ovsdb_connection": ovs.connection,
                       "os_vif_ovs.ovs_vsctl_timeout": 10, "vif_ovs.bridge": bridge}
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths)
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    conf = testkit_cloud.make_conf(
        cloud.conf.state_path, database_url=cloud.conf.database.connection,
        transport_url=cloud.local_cloud.transport_url, options={
            **testkit_cloud.DEFAULT_OPTIONS,
            "compute.vif_driver": request.param, "compute.firewall_driver": "nftables",
            "compute.volume_driver": "local_block", "firewall.netns": ns,
            "local_block.volumes_path": str(volumes), **vif_options})
    local = cloud.local_cloud
    local.stop_compute(REAL)
    svc = compute_cmd.build(conf, rpc.get_transport(conf, local.transport_url), host=REAL,
                            instances_path=paths[REAL])
    svc.start()
    local.computes[REAL] = svc
    if request.param == "ovs":
        undo.push(svc.manager.vif_driver.close)
        cloud.taps = lambda: sorted(ovs.vsctl("list-ports", bridge, check=False)
                                    .stdout.split())
    else:
        cloud.taps = lambda: taps_in(ns)
    cloud.ns, cloud.volumes, cloud.manager = ns, volumes, svc.manager
    cloud.vif_driver = request.param
    return cloud


def new_volume(cloud, undo):
    volume_id = str(uuid.uuid4())
    path = cloud.volumes / f"volume-{volume_id}"
    with open(path, "wb") as f:
        f.truncate(1024 * 1024)
    undo.push(lambda: [run("losetup", "-d", d, check=False)
                       for d in loop_devices_of(str(path))])
    return volume_id


def create(cloud, undo, name, volume_id):
    """A server on the real host, booted from ``volume_id``; with OVS its taps are
    in the root namespace, where nothing else removes the kept guest's."""
    server = cloud.client.create_server(name, host=REAL,
                                        block_device_mapping_v2=bdm_of(volume_id))
    if cloud.vif_driver == "ovs":
        for vif in cloud.db.vif_list(server["id"]):
            undo.push(run, "ip", "link", "del", common.tap_name(vif), check=False)
    return server


def bdm_of(volume_id):
    return [{"boot_index": 0, "uuid": volume_id, "source_type": "volume",
             "destination_type": "volume"}]


def taps_in(ns):
    links = run("ip", "-o", "link", "show", netns=ns).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
                  if line.split(":")[1].strip().startswith(common.TAP_PREFIX))


def host_state(cloud):
    """What of Godwit's the real host holds, as the host's own tools show it
    (``ip link`` in the namespace or ``ovs-vsctl list-ports``, ``nft list``,
    losetup, the volume driver's connection ledger)."""
    taps = cloud.taps()
    table = run("nft", "list", "table", "inet", "godwit", netns=cloud.ns, check=False).stdout
    chains = sorted(w for line in table.splitlines() for w in line.split()
                    if line.strip().startswith("chain ") and w.startswith("inst-"))
    loops = {p.name[len("volume-"):]: loop_devices_of(str(p))
             for p in sorted(cloud.volumes.iterdir())}
    ledger = sorted((c["instance_uuid"], c["volume_id"])
                    for c in cloud.manager.volume_driver.list_connections())
    return {"taps": taps, "chains": chains, "loops": loops, "ledger": ledger}


def things_of(cloud, sid, volume_id):
    """The tap, chain, loop devices and ledger entry that ``sid`` has with its volume."""
    return {"taps": sorted(common.tap_name(v) for v in cloud.db.vif_list(sid)),
            "chains": [nftables.chain_name({"uuid": sid})],
            "volume": volume_id}


def holds(state, things):
    """Which of ``things`` the host holds."""
    return {"taps": [t for t in things["taps"] if t in state["taps"]],
            "chains": [c for c in things["chains"] if c in state["chains"]],
            "loops": state["loops"].get(things["volume"], []),
            "ledger": [e for e in state["ledger"] if e[1] == things["volume"]]}


def plant(cloud, sid, volume_id):
    """Through the agent's own drivers: a VIF plugged, a filter set up, a volume
    connected for ``sid``."""
    m, instance = cloud.manager, {"uuid": sid}
    nw = cloud.db.vif_list(sid)
    assert nw, f"no VIF rows of {sid}"
    for vif in nw:
        m.vif_driver.plug(instance, vif)
    m.firewall_driver.apply_instance_filter(instance, nw)
    bdm = next((b for b in cloud.db.bdm_list(sid) if b["volume_id"] == volume_id),
               {"volume_id": volume_id, "destination_type": "volume"})
    m.volume_driver.connect_volume(instance, bdm)


def reconcile(cloud, host, fix=False):
    rpc_client = cloud.conductor.manager.compute_rpc
    return reconciler.reconcile(cloud.db, rpc_client, host, fix=fix,
                                ctxt=godwit_context.get_admin_context())


def test_real_orphans_of_moved_and_deleted_guests(real_cloud, undo):
    cloud, c = real_cloud, real_cloud.client
    vol = {name: new_volume(cloud, undo) for name in ("moved", "deleted", "stays")}
    moved = create(cloud, undo, "moved", vol["moved"])
    assert moved["status"] == "ACTIVE", moved
    moved = moved["id"]
    built = holds(host_state(cloud), things_of(cloud, moved, vol["moved"]))
    assert all(built.values()), built   # the build made all three for real
    c.live_migrate(moved, host="compute2")
    assert c.wait_migration(moved)["status"] == "completed"
    deleted = create(cloud, undo, "deleted", vol["deleted"])["id"]
    deleted_things = things_of(cloud, deleted, vol["deleted"])   # before its rows go
    c.delete_server(deleted)
    stays = create(cloud, undo, "stays", vol["stays"])["id"]
    kept = things_of(cloud, stays, vol["stays"])
    moved_things = things_of(cloud, moved, vol["moved"])
    clean = host_state(cloud)
    # The migration's source clean-up and the delete's teardown removed theirs.
    for things in (moved_things, deleted_things):
        assert not any(holds(clean, things).values()), holds(clean, things)
    assert all(holds(clean, kept).values()), holds(clean, kept)

    plant(cloud, moved, vol["moved"])
    plant(cloud, deleted, vol["deleted"])
    before = host_state(cloud)
    for things in (moved_things, deleted_things):
        assert all(holds(before, things).values()), holds(before, things)

    # Reported, each with its kind, and nothing changes without fix.
    found = reconcile(cloud, REAL)
    assert host_state(cloud) == before
    kinds = lambda orphans, sid: sorted(o["kind"] for o in orphans  # noqa: E731
                                        if o["instance_uuid"] == sid)
    assert kinds(found, moved) == sorted(PLANTED), found
    assert kinds(found, deleted) == sorted(PLANTED), found
    assert len(found) == 2 * len(PLANTED), found   # nothing of 'stays', nothing else
    assert all(o["removable"] for o in found), found
    assert all("lives on compute2" in o["why"] for o in found if o["instance_uuid"] == moved)
    assert all("deleted" in o["why"] for o in found if o["instance_uuid"] == deleted)
    assert reconcile(cloud, "compute2") == []

    # Removed with fix: every planted orphan, gone from the host; 'stays' untouched.
    fixed = reconcile(cloud, REAL, fix=True)
    removed = [o for o in fixed if o["removed"]]
    assert len(removed) == len(fixed) == 2 * len(PLANTED), fixed
    after = host_state(cloud)
    for things in (moved_things, deleted_things):
        assert not any(holds(after, things).values()), holds(after, things)
    assert holds(after, kept) == holds(before, kept)
    assert after == clean, (after, clean)   # exactly what was there before the planting
    assert reconcile(cloud, REAL) == []
    print(f"\nreal drivers ({cloud.vif_driver}, nftables, local_block): planted "
          f"{len(PLANTED)} kinds x 2 guests = {2 * len(PLANTED)} "
          f"orphans; found {len(found)}; removed {len(removed)}; "
          f"second look found 0; kept guest's tap/chain/volume untouched")

