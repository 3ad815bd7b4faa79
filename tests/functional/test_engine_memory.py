"""What a conductor's engine keeps in memory of a move, and when it lets go.

The instance, VIFs and BDMs a live migration's host steps are sent are read
once while the conductor holds the move (conductor/flows/live.py); they must
not outlive the hold: not for a move that ended and is only cleaned up later,
nor for one another conductor took over.
"""

from godwit import states
from godwit.testkit import fault, wait_for


def kept(engine):
    return dict(engine._infos)


def test_a_deferred_clean_up_keeps_nothing(cloud):
    c = cloud.client
    sid = c.create_server("vm1", host="compute1")["id"]
    engine = cloud.conductor.manager.engine
    cloud.host("compute1").arm(fault("post_live_migration_at_source", "crash", once=True))
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid, timeout=120)
    assert m["status"] == states.COMPLETED
    assert cloud.db.migration_get(m["id"])["cleanup_hosts"]
    assert kept(engine) == {}
    cloud.start_host("compute1")
    wait_for("the deferred clean-up",
             lambda: cloud.db.migration_get(m["id"])["cleanup_hosts"] is None, 60)
    assert kept(engine) == {}


def test_a_move_another_conductor_takes_is_let_go(cloud_factory):
    cloud = cloud_factory(host_step_timeout=1)
    c = cloud.client
    sid = c.create_server("vm1", host="compute1")["id"]
    engine = cloud.conductor.manager.engine
    cloud.host("compute2").arm(fault("pre_live_migration", "hang", 8))
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid, timeout=30, until=("preparing",))
    wait_for("the move's instance kept", lambda: m["id"] in kept(engine), 10)
    # Another conductor takes the move over (this one's lease ran out, say).
    taken = cloud.db.migration_take(m["id"], "conductor-b", 600, force=True)
    assert taken["epoch"] == 2
    wait_for("this conductor to let the move go",
             lambda: m["id"] not in engine.held and m["id"] not in kept(engine), 30)


def test_a_move_being_claimed_here_is_not_taken_back_by_the_sweep(cloud):
    """Between the claim's commit (the row names this conductor) and the
    request's adopt, the sweep would see a move of this conductor it does not
    hold, as after a restart, and take it back at a new epoch under the request."""
    from conductor import live_migrate
    c = cloud.client
    sid = c.create_server("vm1", host="compute1")["id"]
    conductor = cloud.conductor.manager
    engine = conductor.engine
    row = cloud.db.migration_create(dict(
        {"instance_uuid": sid, "migration_type": states.LIVE_MIGRATION,
         "source_compute": "compute1", "dest_compute": "compute2"},
        **live_migrate.move_owner(conductor)))
    with engine.claiming(sid):
        assert engine._own(row) is None
    assert cloud.db.migration_get(row["id"])["epoch"] == 1
    # Once no request of this process claims it, it is a move to take back.
    assert engine._own(row)["epoch"] == 2
