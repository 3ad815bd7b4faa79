"""Claims without races: the last room on a host goes to exactly one request.

compute3 has room for one more m1.tiny (512 MiB of 4096). Six live migrations
towards it and two builds forced onto it arrive at once: exactly one gets the
room, every other is refused (a live migration with 400 and nothing written,
a build ERROR with Nova's "No valid host was found" and the reason), and the
host holds exactly what it can hold. On SQLite, PostgreSQL and MariaDB.
"""

import concurrent.futures

import pytest

from godwit.testing import SETTLED_COLD, APIError, wait_for
from tests.unit.test_db_api import mariadb_url  # noqa: F401 - a fixture

HOSTS = ("compute1", "compute2", "compute3")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request):
    if request.param == "sqlite":
        return None
    return request.getfixturevalue({"postgresql": "postgres_url",
                                    "mariadb": "mariadb_url"}[request.param])


def test_the_last_room_goes_to_exactly_one_request(database, cloud_factory):
    overrides = {"fake.memory_mb": 4096}
    if database:
        overrides["database.connection"] = database
    cloud = cloud_factory(hosts=HOSTS, **overrides)
    c = cloud.client
    for i in range(7):
        c.create_server(f"fill-{i}", host="compute3")
    movers = [c.create_server(f"mover-{i}", host=HOSTS[i % 2])["id"] for i in range(6)]
    before = {sid: dict(c.server(sid)) for sid in movers}

    def live(sid):
        try:
            c.live_migrate(sid, host="compute3")
            return "accepted"
        except APIError as e:
            return e
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        moves = [pool.submit(live, sid) for sid in movers]
        builds = [pool.submit(c.create_server, f"late-{i}", "1", "compute3", False)
                  for i in range(2)]
        answers = [f.result() for f in moves]
        built = [f.result() for f in builds]

    built = [c.wait_server(sid, lambda s: s["status"] != "BUILD") for sid in built]
    accepted = [sid for sid, a in zip(movers, answers) if a == "accepted"]
    for sid in accepted:
        assert c.wait_migration(sid)["status"] == "completed"
    winners = len(accepted) + sum(s["status"] == "ACTIVE" for s in built)
    assert winners == 1, (answers, [(s["status"], s.get("fault")) for s in built])

    for sid, answer in zip(movers, answers):
        if answer == "accepted":
            continue
        assert answer.status == 400, answer
        assert "compute3 lacks RAM: 512 MiB needed, 0 MiB free" in answer.message, answer
        # A refused request changed nothing: no migration, the server as it was.
        assert c.migrations(instance_uuid=sid) == []
        after = c.server(sid)
        assert (after["OS-EXT-SRV-ATTR:host"], after["OS-EXT-STS:task_state"]) == \
            (before[sid]["OS-EXT-SRV-ATTR:host"], None)
    for server in built:
        if server["status"] == "ERROR":
            assert server["fault"]["message"].startswith("No valid host was found"), server
            message = server["fault"]["message"]
            assert "compute3: compute3 lacks RAM: 512 MiB needed" in message, server
            assert server.get("OS-EXT-SRV-ATTR:host") in (None, "")

    usage = cloud.db.host_usage("compute3")
    assert usage["memory_mb"] == 4096, usage
    assert not [m for m in cloud.db.migration_list({"dest_compute": "compute3"})
                if m["status"] not in ("completed", "error", "failed")]
    # The generation counted every claim that won on compute3: the seven fills
    # and the one winner.
    assert cloud.db.compute_node_get_by_host("compute3")["generation"] == 8


def test_a_build_with_no_room_anywhere_says_so_per_host(cloud_factory):
    cloud = cloud_factory(hosts=HOSTS, **{"fake.memory_mb": 1024})
    c = cloud.client
    sid = c.create_server("too-big", flavor="2")["id"]   # 2048 MiB
    server = wait_for("the refusal", lambda: (lambda s: s if s["status"] == "ERROR"
                                              else None)(c.server(sid)))
    message = server["fault"]["message"]
    assert message.startswith("No valid host was found"), message
    for host in HOSTS:
        assert f"{host}: " in message and "lacks" in message, message


def test_a_resized_servers_source_keeps_its_room_until_confirm_or_revert(cloud_factory):
    """Between the copy and the user's decision the guest has left its source,
    but a revert brings it back: the source's room stays held, so another move
    cannot take it and make the revert overfill the host."""
    cloud = cloud_factory(hosts=("compute1", "compute2"), **{"fake.memory_mb": 4096})
    c = cloud.client
    resized = c.create_server("resized", host="compute1")["id"]
    for i in range(7):
        c.create_server(f"fill-{i}", host="compute1")
    other = c.create_server("other", host="compute2")["id"]
    c.action(resized, "resize", {"flavorRef": "2"})
    m = c.wait_migration(resized, until=SETTLED_COLD)
    assert (m["status"], m["dest_compute"]) == ("finished", "compute2")
    assert c.server(resized)["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert cloud.db.host_usage("compute1")["memory_mb"] == 4096
    assert cloud.db.host_usage("compute2")["memory_mb"] == 512 + 2048

    with pytest.raises(APIError) as refused:
        c.live_migrate(other, host="compute1")
    assert refused.value.status == 400
    assert "compute1 lacks RAM: 512 MiB needed, 0 MiB free" in refused.value.message
    assert c.migrations(instance_uuid=other) == []

    c.action(resized, "revertResize")
    assert c.wait_migration(resized)["status"] == "reverted"
    assert cloud.db.host_usage("compute1")["memory_mb"] == 4096
    assert cloud.db.host_usage("compute2")["memory_mb"] == 512
