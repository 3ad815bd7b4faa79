"""Cold migration and resize in one process (LocalCloud, kombu+memory, SQLite).

Same cloud and timing method as the in-process live-migration figure (two
fake hosts sharing the instance directory, the REST API, completion read
from the migration row's ``updated_at``):

* cold migration: ``{"migrate": {"host": <other>}}`` until the migration is
  ``finished`` (the server in VERIFY_RESIZE on the destination), then
  ``confirmResize`` until ``confirmed``; back and forth between the hosts;
* resize: ``{"resize": {"flavorRef": "2"}}`` (m1.tiny to m1.small) until
  ``finished``, then ``revertResize`` until ``reverted`` (disks cannot
  shrink, so reverting is what lets the cycle repeat).
"""

import os
import time

from bench import common, latency
from godwit import phases

FINISHED = "finished"
CONFIRMED = "confirmed"
REVERTED = "reverted"


def _until(conn, sid, after, wanted, timeout=120):
    """The instance's migration newer than ``after`` once it is in ``wanted`` (or final)."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(common._LATEST, {"u": sid, "p": after}).first()
        if row is not None and (row.status in wanted or row.status in phases.FINAL):
            if row.status not in wanted:
                raise RuntimeError(f"migration {row.id} of {sid} ended {row.status}")
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"migration of {sid} not in {wanted} after {timeout}s ({row})")
        time.sleep(0.002)


def _cycle(client, conn, sid, body, finish_body, finish_status):
    after = common.max_migration_id(conn, sid)
    t0 = common.utcnow()
    client.post(f"/servers/{sid}/action", body)
    row = _until(conn, sid, after, (FINISHED,))
    move_ms = common.ms_between(t0, row.updated_at)
    t1 = common.utcnow()
    client.post(f"/servers/{sid}/action", finish_body)
    row = _until(conn, sid, after, (finish_status,))
    return move_ms, common.ms_between(t1, row.updated_at)


def inprocess(workdir, n, warm=2):
    hosts = latency.IN_PROCESS_HOSTS
    cloud = latency.start_inprocess_cloud(os.path.join(workdir, "inprocess-cold"))
    cold, confirm, resize, revert = [], [], [], []
    try:
        c = cloud.client
        sid = common.boot(c, "bench-cold", hosts[0])
        with cloud.poll_engine.connect() as conn:
            for i in range(warm + n):
                current = c.server(sid)["OS-EXT-SRV-ATTR:host"]
                dest = hosts[(hosts.index(current) + 1) % len(hosts)]
                m, f = _cycle(c, conn, sid, {"migrate": {"host": dest}},
                              {"confirmResize": None}, CONFIRMED)
                if i >= warm:
                    cold.append(m)
                    confirm.append(f)
            for i in range(warm + n):
                m, f = _cycle(c, conn, sid, {"resize": {"flavorRef": "2"}},
                              {"revertResize": None}, REVERTED)
                if i >= warm:
                    resize.append(m)
                    revert.append(f)
    finally:
        latency.stop_inprocess_cloud(cloud)
    return {"cold": common.summarize(cold), "confirm": common.summarize(confirm),
            "resize": common.summarize(resize), "revert": common.summarize(revert)}
