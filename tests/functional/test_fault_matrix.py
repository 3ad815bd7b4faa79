"""Runs every case of tests/functional/fault_matrix.py against an in-process cloud."""

import json
import os
import re

import pytest

from godwit.testing import APIError, fake_host
from tests.functional import fault_matrix as fm

VOLUME = "3f1c1d55-8a3b-4a0e-9f0a-2f5f0c8b9e11"
# The conductor waits 1 s for one answer from a host step; a slow step hangs 3 s,
# so it is asked for again (and joined) before it fails. The checks run
# inside the API's call, which waits rpc_response_timeout for each host.
TIMEOUTS = {"host_step_timeout": 1, "rpc_response_timeout": 2}
HOSTS = {"src": "compute1", "dst": "compute2"}
ACTIONS = {"fail": "fail", "slow": "hang:3"}


def records_of(cloud, host, sid):
    """The kinds of records of ``sid`` on ``host`` (domains, filters, vifs, volumes)."""
    snap = fake_host(cloud.conf.fake.hosts_path, host).snapshot()
    return tuple(sorted(kind for kind, recs in snap.items()
                        if any(k == sid or r.get("instance_uuid") == sid
                               for k, r in recs.items())))


def arm(cloud, host, specs):
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root,
                           "faults.json"), "w") as f:
        json.dump(specs, f)


@pytest.mark.parametrize("step,host,phase,mode", fm.CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in fm.CASES])
def test_fault(cloud_factory, step, host, phase, mode):
    api_status, status, vm_status, where, src_left, dst_left = fm.EXPECTED[step, mode]
    cloud = cloud_factory(hosts=tuple(HOSTS.values()), **TIMEOUTS)
    c = cloud.client
    sid = c.create_server("vm", host=HOSTS["src"], block_device_mapping_v2=[
        {"boot_index": 0, "uuid": VOLUME, "source_type": "volume",
         "destination_type": "volume"}])["id"]
    assert records_of(cloud, HOSTS["src"], sid) == fm.ALL
    arm(cloud, HOSTS[host], [f"{step}:{ACTIONS[mode]}"])
    if step == "rollback_live_migration_at_destination":
        arm(cloud, HOSTS["src"], ["live_migration:fail"])  # something to roll back

    try:
        c.live_migrate(sid, host=HOSTS["dst"])
        got_api = 202
    except APIError as e:
        got_api = e.status
    assert got_api == api_status
    m = c.wait_migration(sid, timeout=40)
    assert m["status"] == status, m
    assert m["error_message"]
    server = c.server(sid)
    assert server["status"] == vm_status, server.get("fault")
    assert server["OS-EXT-SRV-ATTR:host"] == HOSTS[where]
    assert server["OS-EXT-STS:task_state"] is None
    other = "dst" if where == "src" else "src"
    left = {"src": src_left, "dst": dst_left}
    assert records_of(cloud, HOSTS[where], sid) == fm.ALL
    assert records_of(cloud, HOSTS[other], sid) == tuple(sorted(left[other]))


def test_published_matrix_is_current():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "fault-matrix.md")
    with open(path) as f:
        text = f.read()
    table = re.search(r"(\| step \(host\).*?)(?:\n\n|\Z)", text, re.S).group(1).strip()
    assert table == fm.markdown().strip(), \
        "docs/fault-matrix.md is stale: regenerate with python -m tests.functional.fault_matrix"
