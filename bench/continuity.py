"""Network continuity: the ping gap of Godwit's live migration against a direct one.

The practitioners' continuity test (tests/real/test_libvirt_network.py) as a
measurement. Two libvirt hosts each in a network namespace of their own, with
their guest bridges joined by a veth "wire" and a pinger on host A's bridge
(``tests.real.continuity``); two Godwit agents with ``virt_driver = libvirt``
and ``vif_driver = linux_bridge`` working in those namespaces, sharing one
instances path; a real Linux guest (Debian's kernel and a busybox initramfs,
``tests.real.guest_kernel``) booted from the image store, its NIC on the tap
our VIF driver plugged.

Every move is pinged every 10 ms from 0.3 s before it starts until 0.7 s after
it ends, and gives the longest gap between two replies and the pings lost:

* **Godwit**: ``POST os-migrateLive`` to ``completed`` (Godwit plugs the VIF on
  the destination in pre_live_migration and unplugs it on the source
  afterwards);
* **direct**: the destination's VIF plugged by the agent's own VIF driver,
  then :class:`bench.libvirt_live.Direct` (migrateToURI3 with the flags and
  parameters Godwit's driver would use), then the source's VIF unplugged.

Rounds alternate the order (direct pair, Godwit pair, then the other way) so
both see the same machine. The interesting number is the gap: a user sees it,
and it is where a VIF plugged after the switch instead of before would show.
"""

import os
import statistics
import time

from bench import common, libvirt_live

FLAVOR = {"flavorid": "lv.kernel", "memory_mb": 192, "vcpus": 1, "root_gb": 1}


def setup(root):
    """(network, libvirt hosts, image store holding the guest kernel) for
    :func:`measure`; stop them with :func:`teardown` (also when this raises,
    nothing is left)."""
    from tests.real import continuity, guest_kernel
    from tests.real import hosts as hosts_mod
    store = continuity.write_image(os.path.join(root, "images"), *guest_kernel.build())
    net = continuity.TwoHostNetwork().create()
    try:
        # host2 and host3: beside bench.real's host0 and host1 (own QEMU caches).
        lvs = hosts_mod.start_hosts(os.path.join(root, "libvirt-netns"), netns=net.hosts,
                                    addresses=net.mgmt_addresses, first_index=2)
    except BaseException:
        net.remove()
        raise
    return net, lvs, store


def teardown(net, lvs):
    from tests.real import hosts as hosts_mod
    try:
        if lvs:
            hosts_mod.stop_hosts(lvs)
    finally:
        if net is not None:
            net.remove()


def agent_groups(instances_path, lv, net, index, store):
    return {
        "DEFAULT": {"instances_path": instances_path,
                    "shutdown_timeout": 2},
        "compute": {"virt_driver": "libvirt", "vif_driver": "linux_bridge",
                    "firewall_driver": "noop", "volume_driver": "fake"},
        "vif_bridge": {"netns": net.hosts[index],
                       "bridge_mappings": f"public:{net.guest_bridges[index]}"},
        "libvirt": {"connection_uri": lv.uri, "migration_peer_uri": lv.uri,
                    "live_migration_inbound_addr": lv.address,
                    "live_migration_monitor_interval": 0.25, "image_store_path": store},
    }


def _vif_of(dep, sid):
    from sqlalchemy import text
    with dep.engine.connect() as conn:
        row = conn.execute(text("SELECT uuid, address, network_id, vif_type, details FROM "
                                "virtual_interfaces WHERE instance_uuid = :u"),
                           {"u": sid}).mappings().one()
    return dict(row)


def _boot(client, net, host, instances_path):
    from tests.real import continuity
    sid = client.create_server("bench-ping", flavor=FLAVOR["flavorid"], host=host,
                               wait=False, imageRef=continuity.IMAGE)
    server = client.wait_server(sid, lambda s: s["status"] != "BUILD", timeout=120)
    if server["status"] != "ACTIVE":
        raise RuntimeError(f"the kernel guest is {server['status']}: {server.get('fault')}")
    continuity.wait_answering(net, os.path.join(instances_path, sid, "console.log"))
    return sid


def measure(dep, hosts, lvs, net, rounds, instances_path):
    """``rounds`` rounds of (direct pair, Godwit pair), the order alternating, on the
    agents ``hosts`` (libvirt hosts ``lvs`` in the namespaces of ``net``, sharing
    ``instances_path``)."""
    from compute import drivers
    from godwit.testing import Client
    from tests.real import continuity
    t_start = time.perf_counter()
    a, b = hosts
    ip = continuity.GUEST_IP
    client = Client(dep.api_url)
    sid = _boot(client, net, a, instances_path)
    boot_s = time.perf_counter() - t_start
    vif = _vif_of(dep, sid)
    instance = {"uuid": sid}
    direct = libvirt_live.Direct(dep, {a: lvs[0], b: lvs[1]}, instances_path, FLAVOR)
    vifs = {h: drivers.load("vif", "linux_bridge", direct.confs[h], h) for h in hosts}
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    results = {"godwit": [], "direct": []}

    def pinged(move):
        pinger = continuity.Pinger(net.pinger, ip).start()
        time.sleep(0.3)
        try:
            took = move()
            time.sleep(0.7)
        finally:
            seen = pinger.stop()
        if seen["received"] == 0 or seen["last_reply"] is None:
            raise RuntimeError(f"the guest did not answer ping around a move: {seen}")
        return dict(seen, took_s=round(took, 3))

    def godwit_move(src, dest):
        live["os-migrateLive"]["host"] = dest
        return common.timed_move(client, conn, sid, live, "completed")[0]

    def direct_move(src, dest):
        t0 = time.perf_counter()
        vifs[dest].plug(instance, vif)              # as pre_live_migration does
        direct.move(sid, src, dest)
        vifs[src].unplug(instance, vif)             # as post_live_migration does
        return time.perf_counter() - t0

    order = []
    with dep.engine.connect() as conn:
        for r in range(rounds):
            for kind in (("direct", "godwit") if r % 2 == 0 else ("godwit", "direct")):
                move = godwit_move if kind == "godwit" else direct_move
                for src, dest in ((a, b), (b, a)):
                    results[kind].append(pinged(lambda: move(src, dest)))  # noqa: B023
                    order.append(kind[0].upper())
    client.delete_server(sid)

    def med(kind, key):
        values = [m[key] for m in results[kind] if m[key] is not None]
        return round(statistics.median(values), 1) if values else None
    out = {"rounds": rounds, "order": "".join(order), "boot_s": round(boot_s, 1),
           "interval_ms": 10}
    for kind in ("godwit", "direct"):
        out[f"{kind}_gap_ms"] = med(kind, "longest_gap_ms")
        out[f"{kind}_gap_max_ms"] = max(m["longest_gap_ms"] for m in results[kind])
        out[f"{kind}_lost"] = med(kind, "lost")
        out[f"{kind}_sent"] = med(kind, "sent")
        out[f"{kind}_move_s"] = med(kind, "took_s")
    if out["godwit_gap_ms"] and out["direct_gap_ms"]:
        out["gap_ratio"] = round(out["godwit_gap_ms"] / out["direct_gap_ms"], 2)
    out["moves"] = results
    return out
