"""Entry point: ``python -m bench.run [--quick]`` (``make bench [QUICK=1]``).

Runs, in one go and each beside its floor:

1. live-migration latency in one process (LocalCloud, kombu+memory, SQLite),
   with the RPC/database counts of one migration, and the in-process cold
   migration and resize medians;
2. live-migration latency with conductor, two agents and the API as processes
   over RabbitMQ and PostgreSQL, plus the floor's unit costs measured on the
   same services (no-op RPC call, cast, single-row UPDATE transaction, one
   write to a host's step journal);
3. memory (agent, conductor) and API listing latency at 10,000 rows, on that
   same deployment;
4. throughput with 5, 10 and 20 agent processes (quick: 5);
5. real hypervisor: a Godwit live migration of a real guest between two real
   libvirt daemons against a direct migrateToURI3 of the same guest
   (bench/libvirt_live.py), and
6. a Godwit cold migration of a qcow2 disk full of random data (1 GiB; quick:
   256 MiB) over SSH against a plain rsync of the same file
   (bench/cold_transfer.py), and
7. network continuity: the longest ping gap of a real Linux guest during a
   Godwit live migration against a direct one (bench/continuity.py); 5-7 on
   one deployment (bench/real.py).

Prints a table and writes ``bench/results.json`` (a ``--quick`` run writes
``bench/results.quick.json`` instead). Every process, database and RabbitMQ
vhost it creates is removed at the end, also on failure; the service logs
stay in a temporary directory whose path is printed when something fails.
A section that could not be measured is null in the JSON with the reason, and
the run then exits 1 (after writing the results), so that CI notices.
"""

import argparse
import datetime
import faulthandler
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

from bench import cold, common, latency, memory, real, throughput

HERE = os.path.dirname(os.path.abspath(__file__))

TARGETS = {
    "live_migration.ratio": ("<= 1.5", lambda v: v <= 1.5),
    "live_migration.inprocess_median_ms": ("< 40 ms", lambda v: v < 40),
    "throughput.per_s@20": (">= 40 /s at 20 agents", lambda v: v >= 40),
    "memory.agent_rss_mb": ("< 80 MB", lambda v: v < 80),
    "memory.conductor_rss_mb": ("< 150 MB", lambda v: v < 150),
    "api.migrations_list_p95_ms": ("< 100 ms", lambda v: v < 100),
    "libvirt.ratio": ("<= 1.3", lambda v: v <= 1.3),
    "cold.ratio": ("<= 1.2", lambda v: v <= 1.2),
}

DEFINITIONS = {
    "libvirt": "seconds; Godwit: POST os-migrateLive until the migration row is 'completed' "
               "(its updated_at); direct: migrateSetMaxDowntime + migrateToURI3 with the flags "
               "and params of Godwit's driver; same 128 MiB TCG guest, same two libvirtd, "
               "shared instances path; medians over both directions, runs alternating",
    "continuity": "a real Linux guest (192 MiB, TCG) with its NIC on the linux_bridge VIF "
                  "driver's tap, pinged every 10 ms from another namespace on host A's bridge "
                  "(bridges of the two hosts joined by a veth), from 0.3 s before each live "
                  "migration until 0.7 s after it; the longest gap between two replies and "
                  "the pings lost, medians over both directions; direct = the destination VIF "
                  "plugged by the agent's VIF driver, then migrateToURI3 as Godwit's driver "
                  "calls it, then the source VIF unplugged; runs alternating",
    "cold": "seconds; Godwit: POST migrate until the migration row is 'finished' "
            "(VERIFY_RESIZE); rsync: the driver's rsync command line over the same sshd to a "
            "fresh path; same qcow2 file full of random data; runs alternating",
}


def sizes(quick):
    if quick:
        return {"inprocess_n": 30, "n": 15, "warm": 3, "ping_n": 100, "db_n": 200, "cold_n": 10,
                "tp_hosts": [5], "tp_migrations": 40, "rows": 10000, "list_n": 15,
                "size_migrations": 2, "lv_rounds": 1, "lv_warm": 0, "cold_ssh_rounds": 2,
                "cold_ssh_mib": 256, "cold_ssh_warm": 0, "cont_rounds": 1}
    return {"inprocess_n": 100, "n": 50, "warm": 3, "ping_n": 200, "db_n": 200, "cold_n": 30,
            "tp_hosts": [5, 10, 20], "tp_migrations": 200, "rows": 10000, "list_n": 50,
            "size_migrations": 4, "lv_rounds": 4, "lv_warm": 1, "cold_ssh_rounds": 5,
            "cold_ssh_mib": 1024, "cold_ssh_warm": 1, "cont_rounds": 3}


def log(msg, t0):
    print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def _r(v, d=1):
    return None if v is None else round(v, d)


def _failed(section):
    """The reason a section is null, or None if it was measured."""
    if section is None:
        return "not run"
    if "error" in section:
        return f"measurement failed: {section['error']}"
    return None


def _cold_results(cold_res, ssh, quick):
    out = {}
    reason = _failed(ssh)
    if reason:
        out.update({"godwit_s": None, "rsync_s": None, "ratio": None, "reason": reason})
    else:
        g, r = ssh["godwit"], ssh["rsync"]
        out.update({
            "godwit_s": _r(g["median"], 3), "rsync_s": _r(r["median"], 3),
            "ratio": _r(g["median"] / r["median"], 2),
            "godwit_p95_s": _r(g["p95"], 3), "rsync_p95_s": _r(r["p95"], 3),
            "confirm_median_s": _r(ssh["confirm"]["median"], 3),
            "n": g["n"], "disk_data_mib": ssh["data_mib"], "disk_bytes": ssh["disk_bytes"],
            "disk_note": (f"quick run: {ssh['data_mib']} MiB of random data in the 1 GiB disk, "
                          "not the full run's 1 GiB") if quick else
                         f"{ssh['data_mib']} MiB of random data (the whole 1 GiB disk)",
            "definition": DEFINITIONS["cold"], "order": ssh["order"],
            "warmup": ssh["warmup"], "steps_ms": ssh["steps_ms"],
            "rsync_command": ssh["rsync_command"], "phases_s": ssh["phases_s"],
            "samples": {"godwit": g, "rsync": r, "confirm": ssh["confirm"]}})
    if "error" in cold_res:
        reason = f"measurement failed: {cold_res['error']}"
        out.update({"inprocess_median_ms": None, "inprocess_reason": reason})
        return out, {"inprocess_median_ms": None, "reason": reason}
    c, r = cold_res["cold"], cold_res["resize"]
    out.update({"inprocess_median_ms": _r(c["median"]), "inprocess_p95_ms": _r(c["p95"]),
                "inprocess_confirm_median_ms": _r(cold_res["confirm"]["median"]),
                "inprocess_n": c["n"],
                "inprocess_definition": "POST migrate (requested host) until the migration is "
                                        "'finished' (VERIFY_RESIZE); confirm timed separately"})
    return (out,
            {"inprocess_median_ms": _r(r["median"]), "inprocess_p95_ms": _r(r["p95"]),
             "inprocess_revert_median_ms": _r(cold_res["revert"]["median"]),
             "inprocess_n": r["n"],
             "inprocess_definition": "POST resize m1.tiny -> m1.small until 'finished'; "
                                     "revert timed separately"})


def _libvirt_results(lv):
    reason = _failed(lv)
    if reason:
        return {"godwit_s": None, "direct_s": None, "ratio": None, "reason": reason}
    g, d = lv["godwit"], lv["direct"]
    return {"godwit_s": _r(g["median"], 3), "direct_s": _r(d["median"], 3),
            "ratio": _r(g["median"] / d["median"], 2),
            "godwit_p95_s": _r(g["p95"], 3), "direct_p95_s": _r(d["p95"], 3), "n": g["n"],
            "godwit_job_ms": lv["godwit_job_ms"], "godwit_downtime_ms": lv["godwit_downtime_ms"],
            "direct_job_ms": lv["direct_job_ms"], "direct_downtime_ms": lv["direct_downtime_ms"],
            "memory_transferred_mib": lv["memory_transferred_mib"],
            "definition": DEFINITIONS["libvirt"], "order": lv["order"], "warmup": lv["warmup"],
            "direct_call": lv["direct_call"], "steps_ms": lv["steps_ms"],
            "phases_s": lv["phases_s"],
            "samples": {"godwit": g, "direct": d, "godwit_observed": lv["godwit_observed"]}}


def _continuity_results(c):
    reason = _failed(c)
    if reason:
        return {"godwit_gap_ms": None, "direct_gap_ms": None, "gap_ratio": None,
                "reason": reason}
    return dict({k: v for k, v in c.items() if k != "moves"},
                definition=DEFINITIONS["continuity"], samples=c["moves"])


def build_results(args, sz, machine, inproc, multi, tps, duration, cold_res, real_res):
    counts = inproc["counts"]
    call_ms = multi["rpc"]["call"]["median"]
    cast_ms = multi["rpc"]["cast"]["median"]
    write_ms = multi["db"]["raw_update"]["median"]
    # The hosts' step journals (compute.journal) are writes the move waits for
    # too: counted in the floor at their own unit cost (issue 11).
    jwrites = counts.get("journal_writes", 0)
    jwrite_ms = multi["db"].get("journal_write", {}).get("median") or 0.0
    # So are the rows a write transaction adds after its first statement (the
    # ledger's and the timeline's with each phase change): each at what a
    # second UPDATE adds to a transaction (issue 11: "the new writes counted
    # in the floor"). The ratio without them is kept beside it.
    more = counts.get("db_more_write_statements", 0)
    twice = multi["db"].get("raw_update_twice", {}).get("median")
    more_ms = max(0.0, twice - write_ms) if twice is not None else 0.0
    floor_txns = (counts["rpc_calls"] * call_ms + counts["rpc_casts"] * cast_ms
                  + counts["db_writes"] * write_ms + jwrites * jwrite_ms)
    floor = floor_txns + more * more_ms
    median = multi["latency"]["median"]
    mem = multi["after"]
    lm = {
        "median_ms": _r(median), "p95_ms": _r(multi["latency"]["p95"]),
        "floor_ms": _r(floor), "ratio": _r(median / floor, 2),
        "floor_transactions_only_ms": _r(floor_txns),
        "ratio_transactions_only": _r(median / floor_txns, 2),
        "more_write_statements": more, "more_write_statement_ms": _r(more_ms, 3),
        "n": multi["latency"]["n"], "warmup": sz["warm"],
        "post_median_ms": _r(multi["post"]["median"]),
        "rpc_calls": counts["rpc_calls"], "rpc_casts": counts["rpc_casts"],
        "db_writes": counts["db_writes"], "db_reads": counts["db_reads"],
        "journal_writes": jwrites, "journal_write_median_ms": _r(jwrite_ms, 3),
        "rpc_call_median_ms": _r(call_ms, 3), "rpc_call_p95_ms": _r(multi["rpc"]["call"]["p95"], 3),
        "rpc_cast_median_ms": _r(cast_ms, 3),
        "db_write_median_ms": _r(write_ms, 3),
        "godwit_db_write_median_ms": _r(multi["db"]["migration_update"]["median"], 3),
        "inprocess_median_ms": _r(inproc["latency"]["median"]),
        "inprocess_p95_ms": _r(inproc["latency"]["p95"]),
        "inprocess_n": inproc["latency"]["n"],
        "cpu_during": {"multiprocess": multi["cpu"], "inprocess": inproc["cpu"]},
        "steps_ms": {"multiprocess": multi["steps_ms"], "inprocess": inproc["steps_ms"]},
        "floor_formula": (f"{counts['rpc_calls']} calls x {call_ms:.3f} ms + "
                          f"{counts['rpc_casts']} casts x {cast_ms:.3f} ms + "
                          f"{counts['db_writes']} write transactions x {write_ms:.3f} ms"
                          + (f" + {jwrites} journal writes x {jwrite_ms:.3f} ms"
                             if jwrites else "")
                          + (f" + {more} more write statements in those transactions x "
                             f"{more_ms:.3f} ms" if more else "")),
        "calls_by_method": counts["calls_by_method"],
        "casts_by_method": counts["casts_by_method"],
        "db_writes_by_method": counts["db_writes_by_method"],
        "db_reads_by_method": counts["db_reads_by_method"],
        "sql_statements": counts["sql_statements"],
        "samples": {"multiprocess": multi["latency"], "inprocess": inproc["latency"],
                    "ping": multi["rpc"]["call"], "cast": multi["rpc"]["cast"],
                    "raw_update": multi["db"]["raw_update"],
                    "migration_update": multi["db"]["migration_update"]},
    }
    hosts = [t["hosts"] for t in tps]
    tp = {
        "hosts": hosts, "migrations": sz["tp_migrations"],
        "per_s": {str(t["hosts"]): t["per_s"] for t in tps},
        "p50_ms": {str(t["hosts"]): _r(t["latency"]["median"]) for t in tps},
        "p95_ms": {str(t["hosts"]): _r(t["latency"]["p95"]) for t in tps},
        "limit_held": all(t["limit_held"] for t in tps),
        "entry": tps[0]["entry"] if tps else None,
        "runs": {str(t["hosts"]): t for t in tps},
    }
    agent_idle = max(multi["agent_rss_idle_mb"].values())
    memory_out = {
        "agent_rss_mb": agent_idle,
        "agent_rss_startup_mb": max(multi["agent_rss_startup_mb"].values()),
        "agent_rss_after_bulk_mb": max(mem["agent_rss_after_mb"].values()),
        "conductor_rss_mb": mem["conductor_rss_mb"],
        "conductor_rss_before_rows_mb": mem["conductor_rss_before_mb"],
        "api_rss_mb": mem["api_rss_mb"], "api_rss_before_rows_mb": mem["api_rss_before_mb"],
        "rows": mem["rows"], "insert_s": mem["insert_s"],
        "migration_at_size_median_ms": _r(mem["migration_at_size"]["median"]),
    }
    api = {
        "rows": mem["rows"], "requests": mem["migrations_list"]["n"],
        "migrations_list_p50_ms": _r(mem["migrations_list"]["median"]),
        "migrations_list_p95_ms": _r(mem["migrations_list"]["p95"]),
        "migrations_list_bytes": mem["migrations_list"]["bytes"],
        "servers_list_p50_ms": _r(mem["servers_list"]["median"]),
        "servers_list_p95_ms": _r(mem["servers_list"]["p95"]),
        "servers_list_bytes": mem["servers_list"]["bytes"],
    }
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), "-m", "bench.run"]
                            + (["--quick"] if args.quick else [])),
        "quick": args.quick, "duration_s": round(duration, 1), "sizes": sz,
        "machine": machine, "git": common.git_info(),
        "live_migration": lm, "throughput": tp, "memory": memory_out, "api": api,
        "libvirt": _libvirt_results(real_res.get("libvirt")),
        "continuity": _continuity_results(real_res.get("continuity")),
        "cold": _cold_results(cold_res, real_res.get("cold"), args.quick)[0],
        "resize": _cold_results(cold_res, real_res.get("cold"), args.quick)[1],
        "real_setup_s": {k: real_res.get(k) for k in (
            "setup_s", "deployment_stop_s", "teardown_s", "total_s", "loadavg_at_start",
            "loadavg_at_end")},
        "targets": {k: v[0] for k, v in TARGETS.items()},
    }


def _status(key, value):
    if value is None or key not in TARGETS:
        return ""
    return "met" if TARGETS[key][1](value) else "NOT met"


def table(res):
    lm, tp, mem, api = res["live_migration"], res["throughput"], res["memory"], res["api"]
    rows = []

    def add(what, godwit, floor="", ratio="", key=None, target=None):
        value = None
        if key is not None:
            top, _, rest = key.partition(".")
            if "@" in rest:
                rest, at = rest.split("@")
                value = res[top][rest].get(at) if isinstance(res[top][rest], dict) else None
            else:
                value = res[top][rest]
        tgt = target if target is not None else (TARGETS[key][0] if key in TARGETS else "")
        rows.append((what, godwit, floor, ratio, tgt, _status(key, value)))

    add("Live migration, multi-process: median",
        f"{lm['median_ms']} ms", f"{lm['floor_ms']} ms", f"{lm['ratio']}x",
        key="live_migration.ratio")
    add("  floor without the rows written after a transaction's first",
        f"{lm['more_write_statements']} such rows", f"{lm['floor_transactions_only_ms']} ms",
        f"{lm['ratio_transactions_only']}x")
    add("Live migration, multi-process: p95", f"{lm['p95_ms']} ms")
    add("  per migration: RPC calls / casts", f"{lm['rpc_calls']} / {lm['rpc_casts']}",
        f"call {lm['rpc_call_median_ms']} ms, cast {lm['rpc_cast_median_ms']} ms")
    add("  per migration: DB write / read txns", f"{lm['db_writes']} / {lm['db_reads']}",
        f"UPDATE txn {lm['db_write_median_ms']} ms",
        f"(godwit {lm['godwit_db_write_median_ms']} ms)")
    add("  POST os-migrateLive returns (median)", f"{lm['post_median_ms']} ms")
    add("Live migration, in-process (memory+SQLite)",
        f"{lm['inprocess_median_ms']} ms (p95 {lm['inprocess_p95_ms']})",
        key="live_migration.inprocess_median_ms")
    for h in tp["hosts"]:
        run = tp["runs"][str(h)]
        add(f"Throughput, {h} agents ({run['completed']} migrations)",
            f"{tp['per_s'][str(h)]} /s", f"p50 {tp['p50_ms'][str(h)]} ms",
            f"p95 {tp['p95_ms'][str(h)]} ms",
            key=f"throughput.per_s@{h}" if h == 20 else None,
            target=TARGETS["throughput.per_s@20"][0] if h == 20 else "")
    add("  concurrency limit held (max 1 per source)", "yes" if tp["limit_held"] else "NO")
    add("Memory: idle compute agent (VmRSS)", f"{mem['agent_rss_mb']} MB",
        f"startup {mem['agent_rss_startup_mb']} MB", key="memory.agent_rss_mb")
    add(f"Memory: conductor after {mem['rows']} rows", f"{mem['conductor_rss_mb']} MB",
        f"before rows {mem['conductor_rss_before_rows_mb']} MB",
        key="memory.conductor_rss_mb")
    add("Memory: API after the listings", f"{mem['api_rss_mb']} MB")
    add("API: GET /os-migrations?limit=1000",
        f"p50 {api['migrations_list_p50_ms']} ms", f"p95 {api['migrations_list_p95_ms']} ms",
        key="api.migrations_list_p95_ms")
    add("API: GET /servers/detail?limit=1000", f"p50 {api['servers_list_p50_ms']} ms",
        f"p95 {api['servers_list_p95_ms']} ms")
    lv, cm, rz = res["libvirt"], res["cold"], res["resize"]
    if lv["ratio"] is None:
        add("libvirt live migration: Godwit vs direct", "n/a", "n/a", "", target="not measured")
    else:
        add(f"libvirt live migration: Godwit vs direct (n={lv['n']} each)",
            f"{lv['godwit_s']} s", f"direct {lv['direct_s']} s", f"{lv['ratio']}x",
            key="libvirt.ratio")
        add("  libvirt job time / downtime (median)",
            f"{lv['godwit_job_ms']} / {lv['godwit_downtime_ms']} ms",
            f"direct {lv['direct_job_ms']} / {lv['direct_downtime_ms']} ms")
    ct = res["continuity"]
    if ct["gap_ratio"] is None:
        add("Ping gap, live migration: Godwit vs direct", "n/a", "n/a", "",
            target="not measured")
    else:
        add(f"Ping gap, live migration: Godwit vs direct (n={2 * ct['rounds']} each)",
            f"{ct['godwit_gap_ms']} ms", f"direct {ct['direct_gap_ms']} ms",
            f"{ct['gap_ratio']}x")
        add("  pings lost per move (median)", f"{ct['godwit_lost']}",
            f"direct {ct['direct_lost']}")
    if cm["ratio"] is None:
        add("Cold migration over ssh: Godwit vs rsync", "n/a", "n/a", "", target="not measured")
    else:
        add(f"Cold migration over ssh, {cm['disk_data_mib']} MiB qcow2: Godwit vs rsync "
            f"(n={cm['n']} each)", f"{cm['godwit_s']} s", f"rsync {cm['rsync_s']} s",
            f"{cm['ratio']}x", key="cold.ratio")
    add("Cold migration, in-process (to VERIFY_RESIZE)",
        f"{cm['inprocess_median_ms']} ms (p95 {cm.get('inprocess_p95_ms')})",
        f"confirm {cm.get('inprocess_confirm_median_ms')} ms")
    add("Resize, in-process (to VERIFY_RESIZE)",
        f"{rz['inprocess_median_ms']} ms (p95 {rz.get('inprocess_p95_ms')})",
        f"revert {rz.get('inprocess_revert_median_ms')} ms")

    headers = ("Measurement", "Godwit", "Floor / detail", "Ratio / detail", "Target", "")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    fmt = lambda cells: "| " + " | ".join(  # noqa: E731 - a Markdown table row
        str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(r) for r in rows]
    out.append("")
    out.append(f"floor = {lm['floor_formula']} = {lm['floor_ms']} ms")
    cpu = lm["cpu_during"]
    out.append("CPU cores busy during the timed migrations: multi-process "
               + ", ".join(f"{k} {v}" for k, v in cpu["multiprocess"]["cores"].items())
               + "; in-process " + ", ".join(f"{k} {v}"
                                             for k, v in cpu["inprocess"]["cores"].items()))
    out.append("steps (median ms, from instance action events), multi-process: "
               + ", ".join(f"{k} {v}" for k, v in lm["steps_ms"]["multiprocess"].items()))
    out.append("  in-process: " + ", ".join(f"{k} {v}"
                                            for k, v in lm["steps_ms"]["inprocess"].items()))
    out.append("calls: " + ", ".join(f"{k} x{v}" for k, v in lm["calls_by_method"].items()))
    out.append("casts: " + ", ".join(f"{k} x{v}" for k, v in lm["casts_by_method"].items()))
    out.append("DB write txns: " + ", ".join(f"{k} x{v}"
                                             for k, v in lm["db_writes_by_method"].items()))
    out.append("DB read txns: " + ", ".join(f"{k} x{v}"
                                            for k, v in lm["db_reads_by_method"].items()))
    out.append(f"throughput entry: {tp['entry']}")
    for h in tp["hosts"]:
        run = tp["runs"][str(h)]
        lc = run["limit_check"]
        out.append(f"  {h} agents: {run['completed']}/{run['started']} completed, "
                   f"{run['error_count']} errors; POST p50 {run['post']['median']} ms; "
                   f"limit: {lc['sampled_violations']} violations in {lc['samples']} samples, "
                   f"{lc['event_overlaps']} overlaps in {lc['event_spans']} event spans, "
                   f"max queued per source {lc['max_queued_per_source']}")
        out.append("    CPU cores busy: " + ", ".join(f"{k} {v}"
                                                      for k, v in run["cpu"]["cores"].items()))
        out.append("    CPU ms per migration: " + ", ".join(
            f"{k} {v}" for k, v in run["cpu_ms_per_migration"].items()
            if k not in ("machine", "others")) + "; idle (2 s before): " + ", ".join(
            f"{k} {v} cores" for k, v in run["idle_cpu"]["cores"].items() if k != "machine"))
    if lv["ratio"] is None:
        out.append(f"libvirt.*: null - {lv['reason']}")
    else:
        out.append(f"libvirt: {lv['definition']}; order {lv['order']}; direct call flags "
                   f"0x{lv['direct_call']['flags']:x}, max downtime "
                   f"{lv['direct_call']['max_downtime_ms']} ms, params "
                   f"{', '.join(lv['direct_call']['params'])}")
        out.append("  Godwit steps (median ms): " + ", ".join(
            f"{k} {v}" for k, v in lv["steps_ms"].items()))
    if cm["ratio"] is None:
        out.append(f"cold.godwit_s/rsync_s/ratio: null - {cm['reason']}")
    else:
        out.append(f"cold over ssh: {cm['disk_note']}; {cm['definition']}; order {cm['order']}; "
                   f"confirm median {cm['confirm_median_s']} s")
        out.append("  Godwit steps (median ms): " + ", ".join(
            f"{k} {v}" for k, v in cm["steps_ms"].items()))
        out.append(f"  rsync: {cm['rsync_command']}")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (under 3 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # kill -USR1: stacks
    sz = sizes(args.quick)

    bench_pid = os.getpid()

    def on_term(signum, _frame):
        if os.getpid() != bench_pid:
            # A child forked without exec (pyroute2 forks one to open a netlink
            # socket in a network namespace, then terminates it) must just die:
            # unwinding would run the bench's own tear-down in the copy.
            os._exit(128 + signum)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    t0 = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="godwit-bench-")
    ok = False
    try:
        log(f"Godwit bench ({'quick' if args.quick else 'full'}); work/log dir {workdir}", t0)
        machine = common.machine_info()
        log(f"in-process live migration: {sz['warm']} warm-up + 1 counted + "
            f"{sz['inprocess_n']} timed", t0)
        inproc = latency.inprocess(workdir, sz["inprocess_n"], sz["warm"])
        log(f"  median {inproc['latency']['median']:.1f} ms; per migration "
            f"{inproc['counts']['rpc_calls']} calls, {inproc['counts']['rpc_casts']} casts, "
            f"{inproc['counts']['db_writes']} DB write txns", t0)
        log(f"in-process cold migration and resize: 2 warm-up + {sz['cold_n']} timed each", t0)
        try:
            cold_res = cold.inprocess(workdir, sz["cold_n"])
            log(f"  cold median {cold_res['cold']['median']:.1f} ms, resize median "
                f"{cold_res['resize']['median']:.1f} ms", t0)
        except Exception as e:  # noqa: BLE001 - recorded; the rest of the bench goes on
            traceback.print_exc()
            cold_res = {"error": f"{e.__class__.__name__}: {e}"}
            log(f"  cold/resize FAILED ({cold_res['error']}); recorded as null", t0)
        log(f"multi-process live migration: {sz['warm']} warm-up + {sz['n']} timed, "
            f"then floor unit costs and memory at {sz['rows']} rows", t0)
        multi = latency.multiprocess(
            workdir, sz["n"], sz["warm"], sz["ping_n"], sz["db_n"],
            after=lambda dep, client, sid: memory.run(dep, client, sid, rows=sz["rows"],
                                                      requests_n=sz["list_n"],
                                                      migrations=sz["size_migrations"]))
        log(f"  median {multi['latency']['median']:.1f} ms; ping "
            f"{multi['rpc']['call']['median']:.2f} ms; UPDATE "
            f"{multi['db']['raw_update']['median']:.2f} ms", t0)
        tps = []
        for hosts in sz["tp_hosts"]:
            log(f"throughput: {sz['tp_migrations']} migrations over {hosts} agents", t0)
            tps.append(throughput.run(workdir, hosts, sz["tp_migrations"]))
            log(f"  {tps[-1]['per_s']} /s, p50 {tps[-1]['latency']['median']} ms, limit held: "
                f"{tps[-1]['limit_held']}", t0)
        log(f"real hypervisor and transfer: two libvirt hosts, a test sshd, one deployment "
            f"({sz['lv_rounds']} libvirt rounds, {sz['cold_ssh_rounds']} cold rounds of "
            f"{sz['cold_ssh_mib']} MiB)", t0)
        real_res = real.run(workdir, sz["lv_rounds"], sz["cold_ssh_rounds"],
                            sz["cold_ssh_mib"], lv_warm=sz["lv_warm"],
                            cold_warm=sz["cold_ssh_warm"], cont_rounds=sz["cont_rounds"],
                            log=lambda m: log(m, t0))
        for name, key in (("libvirt", "direct"), ("cold", "rsync"), ("continuity", None)):
            r = real_res[name]
            if _failed(r):
                log(f"  {name} FAILED ({_failed(r)}); recorded as null", t0)
            elif key is None:
                log(f"  continuity: longest ping gap Godwit {r['godwit_gap_ms']} ms, direct "
                    f"{r['direct_gap_ms']} ms", t0)
            else:
                log(f"  {name}: Godwit median {r['godwit']['median']:.2f} s, {key} "
                    f"{r[key]['median']:.2f} s", t0)
        duration = time.perf_counter() - t0
        machine["loadavg_at_end"] = list(os.getloadavg())
        res = build_results(args, sz, machine, inproc, multi, tps, duration, cold_res,
                            real_res)
        print()
        print(table(res))
        name = "results.quick.json" if args.quick else "results.json"
        path = os.path.join(HERE, name)
        with open(path, "w") as f:
            json.dump(res, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        log(f"wrote {os.path.relpath(path)} (total {duration:.0f} s)", t0)
        failed = [name for name, reason in (
            ("in-process cold/resize", cold_res.get("error")),
            ("libvirt", _failed(real_res["libvirt"])), ("cold over ssh", _failed(real_res["cold"])),
            ("continuity", _failed(real_res["continuity"])))
            if reason]
        if failed:
            print(f"bench: FAILED: not measured: {', '.join(failed)} (see above); service logs "
                  f"kept in {workdir}", file=sys.stderr, flush=True)
            return 1
        ok = True
        return 0
    except BaseException as e:
        traceback.print_exc()
        print(f"bench: FAILED ({e.__class__.__name__}); service logs kept in {workdir}",
              file=sys.stderr, flush=True)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
