"""godwit-manage: database and inventory administration.

    godwit-manage [--config-file F] db sync | db version
    godwit-manage service list
    godwit-manage flavor list
    godwit-manage flavor create NAME --ram MB --vcpus N --disk GB [--id ID]
    godwit-manage reconcile [--host H] [--fix] [--json]

``reconcile`` asks each compute host (every one that is up, or ``--host``) what
it holds and reports what nothing should hold any more (conductor.reconciler);
``--fix`` removes it. Exit status 0 when no orphan is left, 3 when some are.
"""

import argparse
import sys

import sqlalchemy.exc

from godwit import conf as godwit_conf
from godwit import exception
from godwit.db import api as db_api
from godwit.db import migration


def _table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else \
        [len(h) for h in headers]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |", line]
    out += ["| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    out.append(line)
    return "\n".join(out)


def _parser():
    p = argparse.ArgumentParser(prog="godwit-manage")
    sub = p.add_subparsers(dest="category", required=True)
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action",
                                                                     required=True)
    db.add_parser("sync", help="create or upgrade the schema to the latest version")
    db.add_parser("version", help="print the schema version")
    svc = sub.add_parser("service", help="services").add_subparsers(dest="action",
                                                                    required=True)
    svc.add_parser("list", help="list services with their state")
    fl = sub.add_parser("flavor", help="flavors").add_subparsers(dest="action", required=True)
    fl.add_parser("list", help="list flavors")
    create = fl.add_parser("create", help="create a flavor")
    create.add_argument("name")
    create.add_argument("--ram", type=int, required=True, help="RAM in MiB")
    create.add_argument("--vcpus", type=int, required=True)
    create.add_argument("--disk", type=int, default=0, help="root disk in GiB")
    create.add_argument("--ephemeral", type=int, default=0, help="ephemeral disk in GiB")
    create.add_argument("--swap", type=int, default=0, help="swap in MiB")
    create.add_argument("--id", dest="flavorid", help="flavor id (default: the name)")
    rec = sub.add_parser("reconcile", help="report (and remove) what hosts hold that nothing "
                                           "should hold any more")
    rec.add_argument("--host", help="this compute host only (default: every one that is up)")
    rec.add_argument("--fix", action="store_true", help="remove the orphans found (a running "
                                                        "domain is never removed)")
    rec.add_argument("--json", action="store_true", help="print the orphans as JSON")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # oslo.config takes --config-file/--config-dir; the rest is ours.
    conf_args, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] in ("--config-file", "--config-dir") and i + 1 < len(argv):
            conf_args += argv[i:i + 2]
            i += 2
        elif argv[i].startswith(("--config-file=", "--config-dir=")):
            conf_args.append(argv[i])
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    args = _parser().parse_args(rest)
    conf = godwit_conf.parse_args(conf_args, prog="godwit-manage")
    url = conf.database.connection
    try:
        return _run(args, conf, url)
    except exception.GodwitException as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except sqlalchemy.exc.SQLAlchemyError as e:
        print(f"error: database {url.split('@')[-1]} cannot be used: "
              f"{str(e).splitlines()[0]}. If its schema is missing or old, run "
              "'godwit-manage db sync'.", file=sys.stderr)
        return 1


def _run(args, conf, url):
    if args.category == "db":
        if args.action == "sync":
            migration.db_sync(url)
            db_api.get_database(url).ensure_default_flavors()
            print(f"Database at schema {migration.db_version(url)}")
        else:
            print(migration.db_version(url) or "empty (run: godwit-manage db sync)")
        return 0
    db = db_api.get_database(url)
    if args.category == "reconcile":
        return _reconcile(args, conf, db)
    if args.category == "service":
        services = db.service_list()
        rows = [(s["id"], s["binary"], s["host"],
                 "disabled" if s["disabled"] else "enabled",
                 "up" if db.is_host_up(s, conf.service_down_time) else "down",
                 s["last_seen_up"], s["rpc_version"] or "-", s["disabled_reason"] or "")
                for s in services]
        print(_table(["Id", "Binary", "Host", "Status", "State", "Last heartbeat",
                      "RPC version", "Disabled reason"], rows))
        if services:
            # What [upgrade_levels] ... = auto gives now (docs/upgrades.md); "-":
            # a service of a release that did not record it, counted as the oldest.
            from godwit import upgrade

            def up(s):
                return db.is_host_up(s, conf.service_down_time)
            auto = ", ".join(f"{itf.name} {upgrade.from_services(itf, services, up)}"
                             for itf in upgrade.interfaces())
            print(f"[upgrade_levels] auto gives: {auto}")
        return 0
    if args.action == "create":
        for name, value in (("--ram", args.ram), ("--vcpus", args.vcpus)):
            if value <= 0:
                print(f"error: {name} must be a positive number", file=sys.stderr)
                return 2
        for name, value in (("--disk", args.disk), ("--ephemeral", args.ephemeral),
                            ("--swap", args.swap)):
            if value < 0:
                print(f"error: {name} must not be negative", file=sys.stderr)
                return 2
        f = db.flavor_create({"flavorid": args.flavorid or args.name, "name": args.name,
                              "memory_mb": args.ram, "vcpus": args.vcpus,
                              "root_gb": args.disk, "ephemeral_gb": args.ephemeral,
                              "swap": args.swap})
        print(f"Created flavor {f['name']} (id {f['flavorid']})")
        return 0
    rows = [(f["flavorid"], f["name"], f["memory_mb"], f["vcpus"], f["root_gb"],
             f["ephemeral_gb"], f["swap"]) for f in db.flavor_list()]
    print(_table(["ID", "Name", "RAM", "vCPUs", "Disk", "Ephemeral", "Swap"], rows))
    return 0


def _reconcile(args, conf, db):
    import json

    from compute import rpcapi as compute_rpcapi
    from conductor import reconciler
    from godwit import rpc, states
    transport = rpc.get_transport(conf)
    client = compute_rpcapi.ComputeAgentClient(transport, long_timeout=conf.long_rpc_timeout)
    if args.host:
        if db.service_get_by_host(args.host) is None:
            print(f"error: no compute host {args.host!r}; 'godwit-manage service list' shows "
                  "them", file=sys.stderr)
            return 2
        hosts = [args.host]
    else:
        hosts = [s["host"] for s in db.service_list(binary=states.SERVICE_COMPUTE)
                 if db.is_host_up(s, conf.service_down_time)]
    found, failed = [], []
    for host in hosts:
        try:
            found += reconciler.reconcile(db, client, host, fix=args.fix)
        except Exception as e:  # noqa: BLE001 - report the host and go on
            failed.append(host)
            print(f"error: {host} could not be asked: {exception.message_of(e)}",
                  file=sys.stderr)
    rpc.cleanup()
    if args.json:
        print(json.dumps([{k: o.get(k) for k in ("host", "kind", "instance_uuid", "name",
                                                   "why", "moves", "removable", "removed",
                                                   "reason")}
                          for o in found], indent=1))
    else:
        print(_table(["Host", "Kind", "Instance", "Name", "Why", "Left by", "Removed"],
                     [(o["host"], o["kind"], o["instance_uuid"], o["name"], o["why"],
                       ", ".join(f"migration {m}" for m in o["moves"]) or "-",
                       {True: "yes", False: f"no: {o.get('reason') or 'not removable'}",
                        None: "-"}[o["removed"]] if args.fix or o["removed"] is not None
                       else "-") for o in found]))
        print(f"{len(found)} orphans on {len(hosts) - len(failed)} hosts"
              + (f", {sum(bool(o['removed']) for o in found)} removed" if args.fix else ""))
    left = [o for o in found if not o["removed"]]
    return 3 if left or failed else 0


if __name__ == "__main__":
    sys.exit(main())
