"""Memory and API listing latency at size.

Runs against the multi-process latency deployment (see
:func:`bench.latency.multiprocess`): inserts 10,000 instances and 10,000
migration rows into its PostgreSQL database with SQLAlchemy core in bulk (not
through the API), exercises the conductor with a few live migrations (with and
without a requested host, so the scheduler runs too), then times
``GET /os-migrations?limit=1000`` (microversion 2.80) and
``GET /servers/detail?all_tenants=1&limit=1000`` and reads VmRSS of the
conductor, the API and the (idle) agents.
"""

import datetime
import time
import uuid

import requests
import sqlalchemy as sa

from bench import common
from godwit import states
from godwit.db import models


def bulk_insert(engine, rows, chunk=2000):
    """``rows`` instances, each with one completed live-migration row."""
    now = common.utcnow()
    inst_t, mig_t = models.Instance.__table__, models.Migration.__table__
    with engine.connect() as c:
        flavor_id = c.execute(sa.text("SELECT id FROM flavors WHERE flavorid = '1'")).scalar()
    t0 = time.perf_counter()
    for start in range(0, rows, chunk):
        instances, migrations = [], []
        for i in range(start, min(rows, start + chunk)):
            iu = str(uuid.uuid4())
            src, dst = f"bulk-host-{i % 100}", f"bulk-host-{(i + 1) % 100}"
            created = now - datetime.timedelta(seconds=rows - i)
            instances.append({
                "uuid": iu, "display_name": f"bulk-{i}", "user_id": "admin",
                "project_id": f"bulk-project-{i % 20}", "host": dst, "node": dst,
                "availability_zone": "nova", "instance_type_id": flavor_id,
                "memory_mb": 512, "vcpus": 1, "root_gb": 1, "ephemeral_gb": 0,
                "image_ref": "", "config_drive": False, "vm_state": states.ACTIVE,
                "task_state": None, "power_state": states.RUNNING, "progress": 0,
                "launched_at": created, "created_at": created, "updated_at": created})
            migrations.append({
                "uuid": str(uuid.uuid4()), "instance_uuid": iu,
                "migration_type": states.LIVE_MIGRATION, "status": states.COMPLETED,
                "source_compute": src, "dest_compute": dst, "source_node": src,
                "dest_node": dst, "dest_host": "127.0.0.1",
                "old_instance_type_id": flavor_id, "new_instance_type_id": flavor_id,
                "block_migration": False, "hidden": False, "memory_total": 536870912,
                "memory_processed": 536870912, "memory_remaining": 0,
                "user_id": "admin", "project_id": f"bulk-project-{i % 20}",
                "created_at": created, "updated_at": created})
        with engine.begin() as c:
            c.execute(inst_t.insert(), instances)
            c.execute(mig_t.insert(), migrations)
    return round(time.perf_counter() - t0, 2)


def time_get(session, url, params, n, expect_len, key):
    for _ in range(3):
        session.get(url, params=params, timeout=60).raise_for_status()
    samples, size, count = [], 0, 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, params=params, timeout=60)
        samples.append((time.perf_counter() - t0) * 1000.0)
        r.raise_for_status()
        size = len(r.content)
        count = len(r.json()[key])
    if count != expect_len:
        raise RuntimeError(f"GET {url} returned {count} {key}, expected {expect_len}")
    return dict(common.summarize(samples), items=count, bytes=size)


def run(dep, client, sid, rows=10000, requests_n=50, migrations=4):
    out = {"rows": rows}
    out["conductor_rss_before_mb"] = common.rss_mb(dep.pid("conductor"))
    out["api_rss_before_mb"] = common.rss_mb(dep.pid("api"))
    out["insert_s"] = bulk_insert(dep.engine, rows)

    # Exercise the conductor on the big tables: requested host, then scheduler.
    with dep.engine.connect() as conn:
        moves = common.sequential_migrations(client, conn, sid, dep.hosts, migrations // 2)
        for _ in range(migrations - migrations // 2):
            prev = common.max_migration_id(conn, sid)
            t0 = common.utcnow()
            client.live_migrate(sid, host=None)
            row = common.wait_migration(conn, sid, prev)
            if row.status != states.COMPLETED:
                raise RuntimeError(f"scheduled migration {row.id} ended {row.status}")
            moves.append({"latency_ms": common.ms_between(t0, row.updated_at)})
    out["migration_at_size"] = common.summarize([m["latency_ms"] for m in moves])

    s = requests.Session()
    s.headers.update(common.HEADERS)
    out["migrations_list"] = time_get(s, dep.api_url + "/os-migrations", {"limit": "1000"},
                                      requests_n, 1000, "migrations")
    out["servers_list"] = time_get(s, dep.api_url + "/servers/detail",
                                   {"all_tenants": "1", "limit": "1000"}, requests_n, 1000,
                                   "servers")
    time.sleep(1.0)
    out["conductor_rss_mb"] = common.rss_mb(dep.pid("conductor"))
    out["api_rss_mb"] = common.rss_mb(dep.pid("api"))
    out["agent_rss_after_mb"] = {h: common.rss_mb(dep.pid(h)) for h in dep.hosts}
    return out
