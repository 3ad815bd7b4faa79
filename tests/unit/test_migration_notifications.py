"""Phase-change notifications cost nothing when none are configured, and say
what docs/controller.md says when they are."""

import pytest
from oslo_messaging.notify import _impl_test

from godwit import conf as godwit_conf
from godwit import notifications

ROW = {"id": 7, "uuid": "u", "instance_uuid": "i-1", "migration_type": "live-migration",
       "status": "completed", "source_compute": "a", "dest_compute": "b",
       "error_message": None, "step_data": None, "created_at": None, "updated_at": None}


class CountingDb:
    def __init__(self):
        self.reads = 0
        self.on_phase_change = None

    def instance_get(self, uuid, read_deleted=False):
        self.reads += 1
        return {"uuid": uuid, "host": "b", "vm_state": "active"}


def notifier(drivers):
    conf = godwit_conf.new_conf()
    conf([], default_config_files=[])
    conf.set_override("driver", drivers, group="oslo_messaging_notifications")
    return notifications.Notifier(conf, "kombu+memory:////", "test")


@pytest.mark.parametrize("drivers", [[], ["noop"]])
def test_no_driver_no_read_no_send(drivers):
    db = CountingDb()
    n = notifier(drivers)
    n.follow_moves(db)
    _impl_test.reset()
    db.on_phase_change(dict(ROW, status="running"), ROW, "done")
    assert db.reads == 0 and _impl_test.NOTIFICATIONS == []


def test_a_final_phase_is_announced_as_phase_and_end():
    db = CountingDb()
    notifier(["test"]).follow_moves(db)
    _impl_test.reset()
    db.on_phase_change(dict(ROW, status="post-migrating"), ROW, "done")
    sent = [(m["event_type"], prio) for _c, m, prio, _r in _impl_test.NOTIFICATIONS]
    assert sent == [("migration.phase", "INFO"), ("migration.end", "INFO")]
    payload = _impl_test.NOTIFICATIONS[-1][1]["payload"]
    assert payload["godwit_object.name"] == "MigrationPayload"
    data = payload["godwit_object.data"]
    assert (data["previous_status"], data["migration"]["status"], data["event"]) == \
        ("post-migrating", "completed", "done")
    assert data["instance"]["state"] == "active" and db.reads == 1

    _impl_test.reset()
    failed = dict(ROW, status="failed", error_message="why")
    db.on_phase_change(dict(ROW, status="rolling-back"), failed, "rolled_back")
    sent = [(m["event_type"], prio) for _c, m, prio, _r in _impl_test.NOTIFICATIONS]
    assert sent == [("migration.phase", "INFO"), ("migration.error", "ERROR")]
    assert _impl_test.NOTIFICATIONS[-1][1]["payload"]["godwit_object.data"]["reason"] == "why"


def test_a_saved_context_has_no_token():
    """Moves and drains keep the requester's context in the database: never its
    token (godwit.context.RequestContext.to_saved_dict)."""
    from godwit import context as godwit_context
    ctxt = godwit_context.RequestContext(user_id="u", project_id="p", roles=["admin"],
                                         auth_token="secret-token")
    assert ctxt.to_dict()["auth_token"] == "secret-token"
    saved = ctxt.to_saved_dict()
    assert "auth_token" not in saved and saved["user"] == "u"
    assert godwit_context.RequestContext.from_dict(saved).roles == ["admin"]
