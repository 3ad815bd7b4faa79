"""Assertions for what tests of a migration check.

- :func:`assert_only_on`: the guest is on exactly one host;
- :func:`assert_no_leftovers`: no host holds anything of Godwit's it should
  not, judged by the conductor's own reconciler;
- :func:`assert_final`: the newest migration of a server is over;
- :func:`assert_unchanged`: a refused request changed nothing.
"""

import contextlib
import os

import sqlalchemy as sa

from conductor import reconciler
from godwit.testkit.waits import FINAL_MIGRATION_STATUSES

#: What a move or a refusal can change in the database. Not the services'
#: and compute nodes' rows (heartbeats rewrite them every second) nor the
#: instance actions (a refusal is recorded there, as in Nova).
STATE_TABLES = ("instances", "migrations", "block_device_mappings", "virtual_interfaces",
                "move_resources")


def assert_only_on(cloud, server_id, host):
    """The server has its domain on ``host`` and nothing on any other host."""
    domains = cloud.host(host).domains()
    assert server_id in domains, f"{server_id} has no domain on {host}"
    for other in cloud.hosts():
        if other.name != host:
            assert not other.holds(server_id), (
                f"{server_id} left on {other.name}: domain "
                f"{other.domains().get(server_id)}, vifs "
                f"{[k for k, v in other.vifs().items() if v['instance_uuid'] == server_id]}")


def _local_cloud(cloud):
    """The in-process cloud's internals; None for a ProcessCloud."""
    return getattr(cloud, "local_cloud", None)


def _database(cloud):
    local = _local_cloud(cloud)
    return cloud.db if local is None else local.db


def _inventory(cloud, name):
    """What ``name`` holds, as the conductor's reconciler reads it: from the
    agent's drivers while it runs in this process (or was crashed), else from
    its records (a stopped agent, or any agent of a ProcessCloud: the fake
    drivers enumerate those same records)."""
    local = _local_cloud(cloud)
    svc = None if local is None else local.computes.get(name) or next(
        (s for s in local.crashed if s.manager.host == name), None)
    if svc is not None:
        return svc.manager.host_inventory(cloud.admin_context())
    handle = cloud.host(name)
    # "active" only decides whether the reconciler would remove a domain, not
    # whether it is a leftover.
    return {
        "domains": [{"instance_uuid": k, "active": False} for k in handle.domains()],
        "dirs": [{"instance_uuid": d.removesuffix("_resize"), "kind":
                  "resize" if d.endswith("_resize") else "instance",
                  "path": os.path.join(handle.instances_path, d)} for d in handle.disks()],
        "vifs": [{"vif_id": k, "device": k, "instance_uuid": v.get("instance_uuid")}
                 for k, v in handle.vifs().items()],
        "volumes": [{"instance_uuid": v["instance_uuid"], "volume_id": v["volume_id"]}
                    for v in handle.volume_connections().values()],
        "filters": [{"instance_uuid": k} for k in handle.filters()],
    }


def leftovers(cloud):
    """Everything a host holds that no server there and no move under way needs:
    [{"host", "kind", "instance_uuid", "name", "why", ...}]."""
    out = []
    for name in cloud.host_names:
        out.extend(reconciler.classify(_database(cloud), name, _inventory(cloud, name)))
    return out


def assert_no_leftovers(cloud):
    found = leftovers(cloud)
    assert not found, "left behind:\n" + "\n".join(
        f"  {o['host']}: {o['kind']} {o['name']} ({o['why']})" for o in found)


def assert_final(client, server_id, status=None):
    """The newest migration of the server is in a final status (``status``, a
    string or several, if given) and the server has no task under way.
    Returns the migration."""
    m = client.latest_migration(server_id)
    assert m is not None, f"{server_id} has no migration"
    assert m["status"] in FINAL_MIGRATION_STATUSES, f"migration {m['id']} is {m['status']}"
    if status is not None:
        wanted = {status} if isinstance(status, str) else set(status)
        assert m["status"] in wanted, (
            f"migration {m['id']} ended {m['status']}, not {sorted(wanted)}: "
            f"{m.get('error_message')}")
    task = client.server(server_id)["OS-EXT-STS:task_state"]
    assert task is None, f"{server_id} still has task {task} after migration {m['id']}"
    return m


def _snapshot(cloud, tables):
    db = _database(cloud)
    meta = sa.MetaData()
    meta.reflect(db.engine, only=list(tables))
    rows = {}
    with db.engine.connect() as conn:
        for name in tables:
            table = meta.tables[name]
            rows[name] = sorted((dict(r._mapping) for r in conn.execute(sa.select(table))),
                                key=repr)
    hosts = {h.name: (h.domains(), h.vifs(), h.volume_connections(), h.filters())
             for h in cloud.hosts()}
    return rows, hosts


@contextlib.contextmanager
def assert_unchanged(cloud, tables=STATE_TABLES):
    """Around a request that should be refused: on leaving the block, the
    database rows of ``tables`` and every host's records are as they were."""
    before_rows, before_hosts = _snapshot(cloud, tables)
    yield
    after_rows, after_hosts = _snapshot(cloud, tables)
    for name in tables:
        assert after_rows[name] == before_rows[name], (
            f"table {name} changed:\n  before {before_rows[name]}\n  after  {after_rows[name]}")
    assert after_hosts == before_hosts, "a host's records changed"
