"""Real hypervisor: Godwit's live migration against a direct libvirt migrateToURI3.

Two real libvirtd "hosts" on this machine (``tests/real/hosts.py``: private
mount namespaces, 127.0.0.1, TCG guests) and Godwit as deployed - conductor,
API and one godwit-compute per libvirt host with ``virt_driver = libvirt``, as
processes over RabbitMQ and a fresh PostgreSQL database
(:class:`bench.common.HostConfigDeployment`, configured like
``tests/real/conftest.py``'s ``deployment`` fixture). Both agents share one
instances path, so a migration is a shared-storage live migration: Godwit's
orchestration plus QEMU's memory transfer.

One guest (the real tests' 128 MiB flavor, SeaBIOS, no OS) moves between the
two daemons, alternately:

* **Godwit**: ``POST os-migrateLive {"host": <other>}``; the time runs from a
  UTC timestamp taken just before the POST to the migration row's
  ``updated_at`` when it became ``completed``;
* **direct**: one ``dom.migrateToURI3(<peer URI>, params, flags)`` on the same
  guest between the same daemons, with the flags and parameters Godwit's
  driver would use - from ``compute.virt.libvirt.migration.migration_flags``
  and ``migration_params``, fed with the agent's own configuration file and
  ``compute.migration_monitor.initial_params`` - preceded, as Godwit's job
  does, by ``migrateSetMaxDowntime`` with the first downtime step. The time
  is those two calls (the connection to the source daemon and the domain XML
  are prepared before).

After a warm-up pair of Godwit moves (there and back, not counted; none in a
quick run, whose first round starts with the direct pair), each round is a
direct pair and a Godwit pair (there and back each), the order alternating
from round to round (D D G G, G G D D, ...) so that both see the same
machine; every move of a round counts, in both directions. A direct pair
brings the guest back to where Godwit's database says it is before the next
Godwit move. libvirt's own job time and downtime come from the destination's
completed-job statistics (direct) and from the destination agent's log,
which records the same statistics (Godwit).

:func:`measure` runs on a deployment and libvirt hosts that
:mod:`bench.real` starts (shared with the cold-transfer section).
"""

import os
import re
import statistics
import time

from bench import common

FLAVOR = {"flavorid": "lv.tiny", "memory_mb": 128, "vcpus": 1, "root_gb": 1}
ARRIVAL = re.compile(r"Migration of (\S+) arrived: libvirt job time (\d+) ms, "
                     r"downtime (\d+) ms, memory (\d+) bytes")


def agent_groups(lv, addr="127.0.0.1"):
    """The agent options of tests/real/conftest.py's deployment fixture."""
    return {"compute": {"virt_driver": "libvirt", "vif_driver": "noop",
                        "firewall_driver": "noop", "volume_driver": "fake"},
            "libvirt": {"connection_uri": lv.uri, "migration_peer_uri": lv.uri,
                        "live_migration_inbound_addr": addr,
                        "live_migration_monitor_interval": 0.25}}


def _agent_conf(path):
    """The configuration an agent runs with, read from its own file."""
    from godwit import conf as godwit_conf
    conf = godwit_conf.new_conf()
    conf(["--config-file", path], project="godwit-bench", default_config_files=[],
         default_config_dirs=[])
    return conf


class Direct:
    """migrateToURI3 of one guest as Godwit's libvirt driver would call it."""

    def __init__(self, dep, lv_by_host, instances_path, flavor):
        self.dep = dep
        self.lv = lv_by_host
        self.path = instances_path
        self.instance = {"memory_mb": flavor["memory_mb"], "root_gb": flavor["root_gb"],
                         "ephemeral_gb": 0}
        self.confs = {h: _agent_conf(dep.config_path(h)) for h in lv_by_host}
        self.flags = {}

    def move(self, sid, src, dest):
        import libvirt

        from compute import migration_monitor
        from compute.virt.libvirt import config, migration
        conf = self.confs[src]                     # the source agent's options
        dest_conf = self.confs[dest].libvirt
        dest_addr = dest_conf.live_migration_inbound_addr
        migrate_data = {"is_shared_instance_path": True, "block_migration": False,
                        "dest_inbound_addr": dest_addr,
                        "dest_peer_uri": dest_conf.migration_peer_uri}
        conn = self.lv[src].connect()
        try:
            dom = conn.lookupByUUIDString(sid)
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            dest_xml = config.destination_xml(xml, self.path, self.path,
                                              graphics_listen=dest_addr)
            params = migration_monitor.initial_params(conf, self.instance, migrate_data)
            flags = migration.migration_flags(conf, migrate_data, params)
            mparams = migration.migration_params(conf, migrate_data, params, dest_xml,
                                                 config.local_disk_targets(xml))
            self.flags = {"flags": flags, "max_downtime_ms": params["max_downtime_ms"],
                          "params": sorted(mparams)}
            t0 = time.perf_counter()
            if params["max_downtime_ms"]:
                dom.migrateSetMaxDowntime(int(params["max_downtime_ms"]), 0)
            dom.migrateToURI3(migrate_data["dest_peer_uri"], mparams, flags)
            took = time.perf_counter() - t0
        finally:
            conn.close()
        dconn = self.lv[dest].connect()
        try:
            ddom = dconn.lookupByUUIDString(sid)
            if not ddom.isActive():
                raise RuntimeError(f"direct migration of {sid} to {dest}: guest not running")
            stats = ddom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) or {}
        finally:
            dconn.close()
        return took, {"job_ms": stats.get("time_elapsed"), "downtime_ms": stats.get("downtime"),
                      "memory_bytes": stats.get("memory_processed")}


def _arrivals(dep, host, sid):
    return [(int(t), int(d), int(m)) for u, t, d, m in ARRIVAL.findall(dep.log_text(host))
            if u == sid]


def measure(dep, hosts, lvs, rounds, warm=1):
    """``warm`` warm-up Godwit pairs, then ``rounds`` rounds of (direct pair,
    Godwit pair), the order alternating, on the agents ``hosts`` (libvirt hosts
    ``lvs``)."""
    from godwit.testing import Client
    t_start = time.perf_counter()
    a, b = hosts
    lv_by_host = {a: lvs[0], b: lvs[1]}
    instances_path = os.path.join(dep.state, "instances")   # shared by both agents
    client = Client(dep.api_url)
    sid = common.boot_flavor(client, "bench-lv", a, FLAVOR["flavorid"])
    boot_s = time.perf_counter() - t_start
    direct = Direct(dep, lv_by_host, instances_path, FLAVOR)
    godwit, direct_s, godwit_obs, direct_stats, order = [], [], [], [], []
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}

    def godwit_move(dest):
        live["os-migrateLive"]["host"] = dest
        return common.timed_move(client, conn, sid, live, "completed")

    t_moves = time.perf_counter()
    with dep.engine.connect() as conn:
        for _ in range(warm):
            for dest in (b, a):
                godwit_move(dest)
        since = common.max_action_id(conn)
        for r in range(rounds):
            for kind in (("direct", "godwit") if r % 2 == 0 else ("godwit", "direct")):
                for src, dest in ((a, b), (b, a)):
                    if kind == "godwit":
                        took, _row, seen = godwit_move(dest)
                        godwit.append(took)
                        godwit_obs.append(seen)
                    else:
                        took, stats = direct.move(sid, src, dest)
                        direct_s.append(took)
                        direct_stats.append(stats)
                    order.append(kind[0].upper())
    moves_s = time.perf_counter() - t_moves
    # libvirt's statistics of Godwit's moves, as the destination agents logged
    # them: the measured ones are the last ``rounds`` arrivals on each host.
    arrivals = (_arrivals(dep, a, sid)[-rounds:] + _arrivals(dep, b, sid)[-rounds:]
                if rounds else [])
    time.sleep(0.3)   # the last event casts
    steps = common.event_steps(dep.engine, since)

    def med(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 1) if values else None
    return {
        "godwit": common.summarize(godwit), "direct": common.summarize(direct_s),
        "godwit_observed": common.summarize(godwit_obs),
        "order": "".join(order), "rounds": rounds,
        "warmup": f"{warm} Godwit pair(s) (A->B->A)",
        "godwit_job_ms": med([x[0] for x in arrivals]),
        "godwit_downtime_ms": med([x[1] for x in arrivals]),
        "direct_job_ms": med([s["job_ms"] for s in direct_stats]),
        "direct_downtime_ms": med([s["downtime_ms"] for s in direct_stats]),
        "memory_transferred_mib": med([s["memory_bytes"] / 2 ** 20 for s in direct_stats
                                       if s["memory_bytes"]]),
        "direct_call": direct.flags, "steps_ms": steps,
        "phases_s": {"boot": round(boot_s, 1), "moves": round(moves_s, 1),
                     "total": round(time.perf_counter() - t_start, 1)},
    }
