"""``make demo``: boot servers on fake hosts and live-migrate one.

Runs godwit-all's :class:`LocalCloud` on the embedded default (SQLite under
``.state/demo``, in-process transport, three fake compute hosts) and talks to
it over its REST API, as a user would, printing what happens.
"""

import argparse
import os
import shutil
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

import requests  # noqa: E402

from godwit import phases, rpc  # noqa: E402
from godwit.cmd import common  # noqa: E402
from godwit.cmd.all import IN_PROCESS_TRANSPORT, LocalCloud  # noqa: E402

HEADERS = {"X-Auth-Token": "admin:admin", "OpenStack-API-Version": "compute 2.80"}
FINAL = tuple(sorted(phases.FINAL))


def _wait(what, fn, timeout=30, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="godwit-demo")
    parser.add_argument("--state-path", default=os.path.abspath(".state/demo"))
    parser.add_argument("--servers", type=int, default=3)
    args = parser.parse_args(argv)
    shutil.rmtree(args.state_path, ignore_errors=True)
    os.makedirs(args.state_path)
    conf = common.init([], prog="godwit-demo", defaults={
        "state_path": (args.state_path, None),
        "transport_url": (IN_PROCESS_TRANSPORT, None),
        "log_file": (os.path.join(args.state_path, "godwit.log"), None)})
    cloud = LocalCloud(conf, api_port=0).start()
    api = cloud.api_url
    s = requests.Session()
    s.headers.update(HEADERS)
    try:
        print(f"Godwit demo: API {api}, database {common.mask_url(conf.database.connection)}, "
              f"transport {common.mask_url(conf.transport_url)}")
        print(f"Compute hosts: {', '.join(cloud.host_names)} (fake hypervisors, "
              f"state under {conf.fake.hosts_path})")
        ids = []
        for i in range(args.servers):
            r = s.post(f"{api}/servers", json={"server": {
                "name": f"demo-{i + 1}", "flavorRef": "1",
                "availability_zone": "nova:compute1"}})
            r.raise_for_status()
            ids.append(r.json()["server"]["id"])
        for sid in ids:
            server = _wait("boot", lambda sid=sid: (lambda v: v if v["status"] != "BUILD"
                                                    else None)(
                s.get(f"{api}/servers/{sid}").json()["server"]))
            print(f"  booted {server['name']} {sid} on {server['OS-EXT-SRV-ATTR:host']}: "
                  f"{server['status']}")
        sid = ids[0]
        print(f"Live-migrating {sid} (scheduler picks the destination) ...")
        t0 = time.perf_counter()
        r = s.post(f"{api}/servers/{sid}/action",
                   json={"os-migrateLive": {"host": None, "block_migration": "auto"}})
        if r.status_code != 202:
            print(f"demo: live migration refused: {r.status_code} {r.text}")
            return 1
        migration = _wait("the migration to finish", lambda: (
            lambda ms: ms[0] if ms and ms[0]["status"] in FINAL else None)(
            s.get(f"{api}/os-migrations", params={"instance_uuid": sid}).json()["migrations"]))
        elapsed = (time.perf_counter() - t0) * 1000
        server = s.get(f"{api}/servers/{sid}").json()["server"]
        print(f"  migration {migration['uuid']}: {migration['source_compute']} -> "
              f"{migration['dest_compute']}, status {migration['status']}, "
              f"{elapsed:.0f} ms from request to final status")
        print(f"  server now on {server['OS-EXT-SRV-ATTR:host']}, status {server['status']}, "
              f"task_state {server['OS-EXT-STS:task_state']}")
        actions = s.get(f"{api}/servers/{sid}/os-instance-actions").json()["instanceActions"]

        def action_now():
            return s.get(f"{api}/servers/{sid}/os-instance-actions/"
                         f"{actions[0]['request_id']}").json()["instanceAction"]
        # Step events are written just after the steps, when nothing is being
        # driven (decision 33): wait until no more arrive.
        action, deadline = action_now(), time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.3)
            again = action_now()
            if len(again["events"]) == len(action["events"]):
                break
            action = again
        print("  steps recorded:")
        for e in sorted(action["events"], key=lambda e: e["start_time"]):
            print(f"    {e['start_time']}  {e['event']:<45} {e['host']:<10} {e['result']}")
        ok = migration["status"] == "completed" and \
            server["OS-EXT-SRV-ATTR:host"] == migration["dest_compute"]
        print("Demo " + ("succeeded: the server moved." if ok else "FAILED."))
        print(f"Logs: {os.path.join(args.state_path, 'godwit.log')}")
        return 0 if ok else 1
    finally:
        cloud.stop()
        rpc.cleanup()


if __name__ == "__main__":
    sys.exit(main())
