"""The controllers' RPC interface (godwit/controller.py) against a real conductor
and fake hosts: every call, its refusals (the same classes and messages as the
REST API's), the policy, the wire form of version 1.0, and that a refused call
changes nothing."""

import threading

import oslo_messaging as messaging
import pytest

from godwit import context as godwit_context
from godwit import controller, exception, rpc
from godwit.testing import SETTLED_COLD, APIError, assert_only_on, wait_for

HOSTS = ("compute1", "compute2", "compute3")
STUCK = {"fake.migration_bandwidth_mb": 1024, "fake.migration_dirty_rate_mb": 2048,
         "libvirt.live_migration_monitor_interval": 0.05}


@pytest.fixture
def make_cloud(cloud_factory, tmp_path):
    """A cloud whose hosts have instance directories of their own (cold moves copy)."""
    def make(**options):
        paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
        return cloud_factory(hosts=HOSTS, host_paths=paths, **options)
    return make


def client_for(cloud, roles=("admin",), **kwargs):
    transport = rpc.get_transport(cloud.conf, cloud.transport_url)
    return controller.ControllerClient(transport=transport, roles=roles, **kwargs)


def state_of(cloud, sid):
    """What a refused call must leave as it was."""
    s = cloud.client.server(sid)
    return (s["status"], s["OS-EXT-SRV-ATTR:host"], s["OS-EXT-STS:task_state"],
            [(m["id"], m["status"]) for m in cloud.client.migrations(instance_uuid=sid)])


def test_live_migrate_follow_and_list(make_cloud):
    cloud = make_cloud()
    ctl = client_for(cloud)
    sid = cloud.client.create_server("vm", host="compute1")["id"]

    m = ctl.live_migrate(sid)      # the scheduler chooses
    assert set(m) == set(controller.MIGRATION_FIELDS)
    assert m["migration_type"] == "live-migration" and m["instance_uuid"] == sid
    assert m["source_compute"] == "compute1" and m["dest_compute"] in ("compute2", "compute3")
    done = wait_for("the move to end", lambda: (
        lambda r: r if r["status"] == "completed" else None)(ctl.migration(m["id"])))
    assert done["uuid"] == m["uuid"] and ctl.migration(m["uuid"])["id"] == m["id"]
    assert_only_on(cloud, sid, m["dest_compute"])
    assert [r["id"] for r in ctl.migrations(sid)] == [m["id"]]
    # The REST API sees the same move, made by the controller's identity.
    rest = cloud.client.latest_migration(sid)
    assert (rest["id"], rest["status"]) == (m["id"], "completed")
    actions = cloud.client.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
    assert [a["user_id"] for a in actions if a["action"] == "live-migration"] == \
        ["controller"]


def test_cold_migrate_confirm_and_resize_revert(make_cloud):
    cloud = make_cloud()
    ctl = client_for(cloud)
    sid = cloud.client.create_server("vm", host="compute1")["id"]

    m = ctl.migrate(sid, host="compute2")
    assert (m["migration_type"], m["dest_compute"]) == ("migration", "compute2")
    cloud.client.wait_migration(sid, until=SETTLED_COLD)
    confirmed = ctl.confirm_resize(sid)
    assert (confirmed["id"], confirmed["status"]) == (m["id"], "confirming")
    assert cloud.client.wait_migration(sid)["status"] == "confirmed"
    assert_only_on(cloud, sid, "compute2")

    r = ctl.resize(sid, "2")
    assert (r["migration_type"], r["new_instance_type_id"]) == ("resize", 2)
    cloud.client.wait_migration(sid, until=SETTLED_COLD)
    reverted = ctl.revert_resize(sid)
    assert (reverted["id"], reverted["status"]) == (r["id"], "reverting")
    assert cloud.client.wait_migration(sid)["status"] == "reverted"
    server = cloud.client.wait_vm(sid, "ACTIVE")
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert_only_on(cloud, sid, "compute2")


def test_abort_and_force_complete(make_cloud):
    cloud = make_cloud(**STUCK)
    ctl = client_for(cloud)
    a = cloud.client.create_server("a", host="compute1")["id"]
    b = cloud.client.create_server("b", host="compute2")["id"]

    ma = ctl.live_migrate(a, host="compute3")
    cloud.client.wait_status(a, "running")
    asked = ctl.abort(a, ma["id"])
    assert asked["id"] == ma["id"]
    assert cloud.client.wait_migration(a)["status"] == "cancelled"
    assert_only_on(cloud, a, "compute1")

    mb = ctl.live_migrate(b, host="compute3")
    cloud.client.wait_status(b, "running")
    ctl.force_complete(b, str(mb["id"]))          # the id as a string works too
    assert cloud.client.wait_migration(b)["status"] == "completed"
    assert_only_on(cloud, b, "compute3")


def test_refusals_are_the_rest_apis_classes_and_change_nothing(make_cloud):
    cloud = make_cloud(**STUCK)
    ctl = client_for(cloud)
    sid = cloud.client.create_server("vm", host="compute1")["id"]
    before = state_of(cloud, sid)
    unknown = "00000000-0000-4000-8000-000000000000"

    def refused(call, rest=None):
        """The refusal of ``call``; with ``rest`` (a REST request doing the same),
        also that REST answers it with the refusal's code and message."""
        with pytest.raises(exception.GodwitException) as info:
            call()
        e = info.value
        if rest is not None:
            with pytest.raises(APIError) as rest_info:
                rest()
            assert rest_info.value.status == e.code, (rest_info.value, e)
            assert exception.message_of(e) in rest_info.value.message
        assert state_of(cloud, sid) == before
        return e

    e = refused(lambda: ctl.live_migrate(unknown),
                lambda: cloud.client.live_migrate(unknown))
    assert isinstance(e, exception.InstanceNotFound) and e.code == 404
    e = refused(lambda: ctl.live_migrate(sid, host="compute1"),
                lambda: cloud.client.live_migrate(sid, host="compute1"))
    assert isinstance(e, exception.DestinationIsSource) and e.code == 400
    e = refused(lambda: ctl.live_migrate(sid, host="no-such-host"),
                lambda: cloud.client.live_migrate(sid, host="no-such-host"))
    assert e.code == 400 and "no-such-host" in str(e)
    e = refused(lambda: ctl.live_migrate(sid, host="bad host;rm"))
    assert isinstance(e, exception.Invalid) and "host" in str(e)
    e = refused(lambda: ctl.live_migrate(sid, block_migration="maybe"))
    assert isinstance(e, exception.Invalid) and "block_migration" in str(e)
    e = refused(lambda: ctl.confirm_resize(sid),
                lambda: cloud.client.action(sid, "confirmResize", None, 204))
    assert isinstance(e, exception.InstanceInvalidState) and e.code == 409
    e = refused(lambda: ctl.revert_resize(sid))
    assert isinstance(e, exception.InstanceInvalidState)
    e = refused(lambda: ctl.resize(sid, "no-such-flavor"))
    assert e.code == 400 and "no-such-flavor" in str(e)
    e = refused(lambda: ctl.abort(sid, 12345))
    assert isinstance(e, exception.InstanceInvalidState)   # not migrating: Nova's order
    e = refused(lambda: ctl.migration("12345"))
    assert isinstance(e, exception.MigrationNotFound) and e.code == 404
    e = refused(lambda: ctl.migrations(unknown))
    assert isinstance(e, exception.InstanceNotFound)
    e = refused(lambda: ctl.live_migrate(["not", "an", "id"]))
    assert isinstance(e, exception.Invalid) and "server_id" in str(e)
    e = refused(lambda: ctl.live_migrate(None))
    assert isinstance(e, exception.Invalid)
    e = refused(lambda: ctl.migration(2 ** 80))
    assert isinstance(e, exception.MigrationNotFound)
    e = refused(lambda: ctl.migrate(sid, host="compute1"),
                lambda: cloud.client.action(sid, "migrate", {"host": "compute1"}))
    assert e.code == 400
    e = refused(lambda: ctl.resize(sid, "1"),
                lambda: cloud.client.action(sid, "resize", {"flavorRef": "1"}))
    assert e.code == 400 and "already has flavor" in str(e)
    with pytest.raises(TypeError, match="unexpected keyword argument 'extra'"):
        ctl.client.call(ctl.context(), "migration", migration_id=1, extra=True)

    # The same refusals for a live migration under way, over RPC and REST.
    other = cloud.client.create_server("busy", host="compute1")["id"]
    m = ctl.live_migrate(other, host="compute2")   # never converges (STUCK)
    cloud.client.wait_status(other, "running")
    for call, rest, code in (
            (lambda: ctl.force_complete(other, 424242),
             lambda: cloud.client.force_complete(other, 424242), 400),
            (lambda: ctl.abort(other, 424242),
             lambda: cloud.client.abort_migration(other, 424242), 404),
            (lambda: ctl.confirm_resize(other),
             lambda: cloud.client.action(other, "confirmResize", None, 204), 409),
            (lambda: ctl.live_migrate(other, host="compute3"),
             lambda: cloud.client.live_migrate(other, host="compute3"), 409)):
        with pytest.raises(exception.GodwitException) as info:
            call()
        with pytest.raises(APIError) as rest_info:
            rest()
        assert info.value.code == rest_info.value.status == code, (info.value, rest_info)
        assert exception.message_of(info.value) in rest_info.value.message
    ctl.abort(other, m["id"])
    assert cloud.client.wait_migration(other)["status"] == "cancelled"


def test_policy_moves_are_admin_only_and_is_admin_is_not_taken_on_trust(make_cloud):
    cloud = make_cloud()
    sid = cloud.client.create_server("vm", host="compute1")["id"]
    before = state_of(cloud, sid)
    # A member of the server's own project (another project's would not even
    # see the server: 404, as over REST).
    member = client_for(cloud, roles=("member",), project_id="admin")
    for call in (lambda: member.live_migrate(sid), lambda: member.live_migrate(
            sid, host="compute2"), lambda: member.migrate(sid),
            lambda: member.migrate(sid, host="compute2")):
        with pytest.raises(exception.Forbidden) as info:
            call()
        assert info.value.code == 403
    # A context that says is_admin without the admin role is refused all the same.
    forged = godwit_context.RequestContext(user_id="x", project_id="admin",
                                           roles=["member"], is_admin=True)
    assert forged.to_dict()["is_admin"] is True
    with pytest.raises(exception.Forbidden):
        member.live_migrate(sid, ctxt=forged)
    assert state_of(cloud, sid) == before
    # A resize is the owner's to ask for, over RPC as over REST (Nova's default
    # policy); a member of another project does not even see the server.
    stranger = client_for(cloud, roles=("member",), project_id="other")
    with pytest.raises(exception.InstanceNotFound):
        stranger.resize(sid, "2")
    # ... even when its context claims to be an admin's.
    forged = godwit_context.RequestContext(user_id="x", project_id="other",
                                           roles=["member"], is_admin=True)
    with pytest.raises(exception.InstanceNotFound):
        stranger.resize(sid, "2", ctxt=forged)
    assert state_of(cloud, sid) == before
    # The other calls: steering and looking are admin-only; a stranger does
    # not see the server at all.
    for call in (lambda: member.abort(sid, 1), lambda: member.force_complete(sid, 1),
                 lambda: member.migration(1), lambda: member.migrations(sid)):
        with pytest.raises(exception.Forbidden):
            call()
    for call in (lambda: stranger.confirm_resize(sid), lambda: stranger.revert_resize(sid),
                 lambda: stranger.abort(sid, 1), lambda: stranger.migrations(sid)):
        with pytest.raises(exception.InstanceNotFound):
            call()
    # Roles must be a list of strings: "xadminx" contains "admin" as a string.
    odd = godwit_context.RequestContext(user_id="x", project_id="other", roles="xadminx")
    with pytest.raises(exception.Invalid, match="roles"):
        stranger.resize(sid, "2", ctxt=odd)
    assert controller.ControllerClient(transport=rpc.get_transport(
        cloud.conf, cloud.transport_url), roles="member").identity["roles"] == ["member"]
    assert state_of(cloud, sid) == before
    assert member.resize(sid, "2")["migration_type"] == "resize"


def test_version_1_0_on_the_wire_and_versions_not_served(make_cloud):
    """What a 1.0 client sends, written out here so that a later conductor that
    stops accepting it fails this test; versions the conductor does not serve
    are refused with UnsupportedVersion, not half-run."""
    cloud = make_cloud()
    sid = cloud.client.create_server("vm", host="compute1")["id"]
    transport = rpc.get_transport(cloud.conf, cloud.transport_url)
    ctxt = godwit_context.RequestContext(user_id="old", project_id="old", roles=["admin"])

    def raw(version):
        return rpc.get_client(transport, "godwit_controller", version=version, timeout=60)

    m = raw("1.0").call(ctxt, "live_migrate", server_id=sid, host="compute2",
                        block_migration="auto")
    assert m["dest_compute"] == "compute2"
    assert cloud.client.wait_migration(sid)["status"] == "completed"
    assert raw("1.0").call(ctxt, "migration", migration_id=m["id"])["status"] == "completed"
    assert [r["id"] for r in raw("1.0").call(ctxt, "migrations", server_id=sid)] == [m["id"]]
    for version in ("1.9", "2.0"):
        with pytest.raises(messaging.RemoteError) as info:
            raw(version).call(ctxt, "migration", migration_id=m["id"])
        assert info.value.exc_type == "UnsupportedVersion"
    # A client capped below what it would send refuses before sending.
    capped = client_for(cloud, version_cap="0.9")
    with pytest.raises(messaging.RPCVersionCapError):
        capped.migration(m["id"])


def test_client_needs_a_broker():
    with pytest.raises(ValueError, match="transport_url"):
        controller.ControllerClient()


# --- following moves by notifications alone ---------------------------------------------
class Followed:
    """What a controller's listener heard, per migration id."""

    def __init__(self):
        self.events = {}
        self.lock = threading.Lock()

    def __call__(self, event_type, data):
        with self.lock:
            self.events.setdefault(data["migration"]["id"], []).append((event_type, data))

    def of(self, migration_id):
        with self.lock:
            return list(self.events.get(migration_id, []))



def _chain(events):
    """The statuses of the move in order, following each change's link to the one
    before (a listener's handlers run on a pool: arrival order is not the order)."""
    changes = [d for t, d in events if t in ("migration.start", "migration.phase")]
    after = {d["previous_status"]: d for d in changes}
    assert len(after) == len(changes), changes      # no status entered twice here
    chain, status = [], None
    while status in after:
        status = after[status]["migration"]["status"]
        chain.append(status)
    assert len(chain) == len(changes), (chain, changes)
    return chain


def _ended(heard, migration_id):
    """The move's events once its end was heard and every change before it too."""
    def done():
        events = heard.of(migration_id)
        ends = [d for t, d in events if t in ("migration.end", "migration.error")]
        if not ends:
            return None
        try:
            chain = _chain(events)
        except AssertionError:
            return None
        return events if chain and chain[-1] == ends[0]["migration"]["status"] else None
    return wait_for(f"the end of migration {migration_id}", done)


def test_a_listener_alone_follows_every_phase_of_every_move(make_cloud):
    cloud = make_cloud(**{"oslo_messaging_notifications.driver": ["messagingv2"]})
    heard = Followed()
    listener = controller.listen(heard, transport=rpc.get_transport(cloud.conf,
                                                                    cloud.transport_url),
                                 pool="test-controller")
    try:
        ctl = client_for(cloud)
        sid = cloud.client.create_server("vm", host="compute1")["id"]

        live = ctl.live_migrate(sid, host="compute2")
        events = _ended(heard, live["id"])
        assert _chain(events) == ["accepted", "queued", "preparing", "running",
                                  "post-migrating", "completed"]
        [end] = [d for t, d in events if t == "migration.end"]
        assert not [t for t, _d in events if t == "migration.error"]
        assert end["instance"]["uuid"] == sid and end["instance"]["host"] == "compute2"
        assert (end["migration"]["source_compute"],
                end["migration"]["dest_compute"]) == ("compute1", "compute2")

        def reached(migration_id, status):
            try:
                chain = _chain(heard.of(migration_id))
            except (AssertionError, IndexError):
                return False
            return bool(chain) and chain[-1] == status

        cold = ctl.migrate(sid, host="compute3")
        wait_for("finished", lambda: reached(cold["id"], "finished"))
        ctl.confirm_resize(sid)     # recorded by the conductor's endpoint
        events = _ended(heard, cold["id"])
        assert _chain(events)[-3:] == ["finished", "confirming", "confirmed"]

        # A revert recorded by the REST API is announced too.
        back = ctl.migrate(sid, host="compute1")
        wait_for("finished", lambda: reached(back["id"], "finished"))
        cloud.client.action(sid, "revertResize")
        events = _ended(heard, back["id"])
        assert _chain(events)[-3:] == ["finished", "reverting", "reverted"]

        # A failure: announced as migration.error, with the reason.
        cloud.host("compute1").arm("pre_live_migration:fail")
        failed = ctl.live_migrate(sid, host="compute1")
        events = _ended(heard, failed["id"])
        [error] = [d for t, d in events if t == "migration.error"]
        assert _chain(events)[-1] == error["migration"]["status"] == "failed"
        assert "Injected fault" in error["reason"], error
    finally:
        listener.stop()
        listener.wait()
