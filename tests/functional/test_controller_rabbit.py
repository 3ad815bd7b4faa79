"""A controller on the real RabbitMQ with an account of its own, limited as
docs/controller.md says: it can call the controllers' topic and follow moves'
notifications, and nothing else (the agents' internal topics are refused)."""

import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import oslo_messaging as messaging
import pytest

from godwit import context as godwit_context
from godwit import controller, rpc
from godwit.testing import assert_only_on, wait_for


def _rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def controller_account(vhost, user, password, pool, exchange="godwit"):
    """The account docs/controller.md describes, made with rabbitmqctl."""
    _rabbitmqctl("add_user", user, password)
    names = f"^({exchange}|reply_.*|{pool})$"
    _rabbitmqctl("set_permissions", "-p", vhost, user, names, names, names)
    _rabbitmqctl("set_topic_permissions", "-p", vhost, user, exchange,
                 rf"^{controller.TOPIC}(\..*)?$",
                 rf"^{controller.NOTIFICATION_TOPIC}\.(info|error)$")


@pytest.fixture
def controller_url(rabbit_vhost):
    parts = urlsplit(rabbit_vhost)
    vhost = parts.path.lstrip("/")
    if not vhost:
        pytest.fail("rabbitmqctl is needed to make a vhost and an account")
    user, password = f"ctl-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    pool = f"{user}-moves"
    controller_account(vhost, user, password, pool)
    url = urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:{parts.port}",
                      "/" + vhost, "", ""))
    yield url, pool
    subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True,
                   timeout=60)


def test_a_controller_account_limited_to_its_topic(rabbit_vhost, controller_url,
                                                   godwit_cloud_factory):
    url, pool = controller_url
    cloud = godwit_cloud_factory(
        hosts=2, transport_url=rabbit_vhost,
        options={"oslo_messaging_notifications.driver": ["messagingv2"]})
    sid = cloud.client.create_server("vm", host=cloud.host_names[0])["id"]

    heard = []
    listener = controller.listen(lambda t, d: heard.append((t, d)), transport_url=url,
                                 pool=pool)
    ctl = controller.ControllerClient(url, timeout=60)
    try:
        m = ctl.live_migrate(sid)
        end = wait_for("the move's end, heard", lambda: next(
            (d for t, d in heard if t == "migration.end" and d["migration"]["id"] == m["id"]),
            None), timeout=60)
        assert end["migration"]["status"] == "completed"
        assert_only_on(cloud, sid, cloud.host_names[1])

        # The agents' internal topic is not this account's to call.
        internal = rpc.get_client(ctl.client.transport, "conductor", version="2.0",
                                  timeout=10)
        ctxt = godwit_context.RequestContext(roles=["admin"])
        with pytest.raises(messaging.MessageDeliveryFailure) as refused:
            internal.prepare(retry=0).call(ctxt, "instance_update", instance_uuid=sid,
                                           values={"vm_state": "error"})
        assert "ACCESS_REFUSED" in str(refused.value) and "'conductor'" in str(refused.value)
        assert cloud.client.server(sid)["status"] == "ACTIVE"
    finally:
        listener.stop()
        listener.wait()
        ctl.close()
