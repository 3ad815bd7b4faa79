"""noauth2 makes a request without a token an admin: godwit-api (and
godwit-all) start with it only on loopback, unless explicitly allowed."""

import os
import socket
import subprocess
import sys

import pytest

from api import cmd as api_cmd
from godwit import rpc
from godwit.cmd.all import IN_PROCESS_TRANSPORT, LocalCloud
from tests.conftest import make_conf

BIN = os.path.dirname(sys.executable)


@pytest.mark.parametrize("host,expected", [
    ("127.0.0.1", True), ("127.0.0.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("192.0.2.10", False), ("2001:db8::1", False), ("no-such-host.invalid", False),
])
def test_is_loopback(host, expected):
    assert api_cmd.is_loopback(host) is expected


def _port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", int(port))) == 0


def test_noauth2_on_every_address_is_refused_with_what_to_do(tmp_path):
    conf = make_conf(tmp_path, **{"api.listen": "0.0.0.0"})
    transport = rpc.get_transport(conf, IN_PROCESS_TRANSPORT)
    with pytest.raises(api_cmd.UnsafeAuthConfig) as err:
        api_cmd.APIServer(conf, transport, port=0)
    message = str(err.value)
    for fragment in ("refuses to start", "noauth2", "0.0.0.0", "auth_strategy = keystone",
                     "127.0.0.1", "allow_noauth_on_network = True"):
        assert fragment in message, message


def test_noauth2_on_a_routable_address_is_refused(tmp_path):
    conf = make_conf(tmp_path)
    transport = rpc.get_transport(conf, IN_PROCESS_TRANSPORT)
    with pytest.raises(api_cmd.UnsafeAuthConfig, match="not a loopback address"):
        api_cmd.APIServer(conf, transport, host="192.0.2.10", port=0)


@pytest.mark.parametrize("overrides", [
    {"api.listen": "0.0.0.0", "api.allow_noauth_on_network": True},
    {"api.listen": "127.0.0.1"},
    {"api.listen": "0.0.0.0", "api.auth_strategy": "keystone"},
])
def test_api_starts_when_allowed_on_loopback_or_with_keystone(tmp_path, overrides):
    conf = make_conf(tmp_path, **overrides)
    transport = rpc.get_transport(conf, IN_PROCESS_TRANSPORT)
    server = api_cmd.APIServer(conf, transport, port=0)
    server.start()
    try:
        assert _port_in_use(server.port)
    finally:
        server.stop()
        server.wait()


def test_godwit_all_refuses_before_starting_anything(tmp_path):
    conf = make_conf(tmp_path, **{"api.listen": "0.0.0.0"})
    cloud = LocalCloud(conf, hosts=("compute1",), api_port=0)
    with pytest.raises(api_cmd.UnsafeAuthConfig):
        cloud.start()
    assert cloud.conductor is None and not cloud.computes


def test_godwit_api_process_exits_with_the_message(tmp_path):
    config = tmp_path / "godwit.conf"
    config.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n"
                      "transport_url = kombu+memory:////\n"
                      "[api]\nlisten = 0.0.0.0\nport = 1\n")
    proc = subprocess.run([os.path.join(BIN, "godwit-api"), "--config-file", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "godwit-api: error: godwit-api refuses to start" in proc.stderr
    assert "allow_noauth_on_network = True" in proc.stderr


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg2://godwit:pw@db/godwit", "postgresql+psycopg2://godwit:***@db/godwit"),
    ("rabbit://guest:guest@h1:5672,u2:p2@h2:5672/vh", "rabbit://guest:***@h1:5672,u2:***@h2:5672/vh"),
    ("sqlite:////tmp/g/godwit.sqlite", "sqlite:////tmp/g/godwit.sqlite"),
    ("kombu+memory:////", "kombu+memory:////"),
    ("postgresql://godwit@db/godwit", "postgresql://godwit@db/godwit"),
])
def test_mask_url(url, shown):
    from godwit.cmd import common
    assert common.mask_url(url) == shown
