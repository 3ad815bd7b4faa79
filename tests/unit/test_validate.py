"""Host names, uuids and peer URIs are checked before a URI, a command or a
path is built from them (godwit.validate); hostile values fail clearly and
nothing runs."""

import os
import subprocess
import uuid

import pytest

from compute.transfer import ssh
from compute.virt import fake
from godwit import exception, validate
from tests.conftest import make_conf

HOSTILE_HOSTS = ["-oProxyCommand=x", "a;b", "../x", "a b", "a" * 300,
                 "x" * 64 + ".example.org", "", "host:22", "user@host", "a/b", "a\nb",
                 "$(reboot)", "`id`", "[host]", "a..b", "-", "h-.example", None, 7]
UUID = "5f2b7d1c-3a4e-4b8f-9c0d-1e2f3a4b5c6d"


@pytest.mark.parametrize("value", ["compute1", "compute-2.example.org", "10.0.0.7",
                                   "a" * 63, ".".join(["a" * 63] * 3) + "." + "b" * 61])
def test_host_accepts_rfc1123_names_and_ipv4(value):
    assert validate.host(value) == value


@pytest.mark.parametrize("value,canonical,in_uri", [
    ("::1", "::1", "[::1]"), ("[2001:db8::7]", "2001:db8::7", "[2001:db8::7]"),
    ("fe80::1%eth0", "fe80::1%eth0", "[fe80::1%25eth0]"), ("compute1", "compute1", "compute1"),
])
def test_host_ipv6_and_its_uri_form(value, canonical, in_uri):
    assert validate.host(value) == canonical
    assert validate.uri_host(value) == in_uri


@pytest.mark.parametrize("value", HOSTILE_HOSTS, ids=repr)
def test_hostile_host_names_are_refused_with_a_clear_error(value):
    with pytest.raises(exception.InvalidHostName) as err:
        validate.host(value)
    assert "Refusing host name" in str(err.value)
    assert err.value.code == 400
    assert len(str(err.value)) < 400   # a huge name is not echoed whole


def test_leading_dash_error_says_why():
    with pytest.raises(exception.InvalidHostName, match="read as an option"):
        validate.host("-oProxyCommand=x")


@pytest.mark.parametrize("value", ["../x", "a/b", "", None, UUID + "/..", UUID[:-1],
                                   "{" + UUID + "}", "urn:uuid:" + UUID, UUID + "\n",
                                   UUID.replace("-", "")])
def test_instance_paths_come_from_uuids_only(tmp_path, value):
    with pytest.raises(exception.InvalidUUID, match="not a uuid"):
        validate.instance_dir(str(tmp_path), value)


def test_instance_dir_of_a_uuid(tmp_path):
    assert validate.instance_dir(str(tmp_path), UUID) == os.path.join(str(tmp_path), UUID)
    assert validate.instance_dir(str(tmp_path), UUID, "_resize").endswith(UUID + "_resize")


@pytest.mark.parametrize("uri", ["qemu+tcp://compute2/system", "qemu+tls://10.0.0.2:16514/system",
                                 "qemu+ssh://godwit@compute2/system", "qemu+tcp://[::1]/system"])
def test_peer_uri_accepted(uri):
    assert validate.libvirt_peer_uri(uri) == uri


@pytest.mark.parametrize("uri,error", [
    ("qemu+ssh://compute2/system?command=/bin/sh", exception.MigrationPreCheckError),
    ("qemu+ssh://compute2/system?netcat=x", exception.MigrationPreCheckError),
    ("qemu+ext://compute2/system", exception.MigrationPreCheckError),
    ("qemu+ssh://-oProxyCommand=x/system", exception.InvalidHostName),
    ("qemu+ssh://a;b/system", exception.InvalidHostName),
    ("qemu+ssh://compute2/../etc", exception.MigrationPreCheckError),
    ("qemu+ssh://a:b@compute2/system", exception.MigrationPreCheckError),
    ("qemu+ssh://-u@compute2/system", exception.MigrationPreCheckError),
    ("qemu+tcp://compute2:x/system", exception.MigrationPreCheckError),
    ("qemu+tcp:///system", exception.MigrationPreCheckError),
    (None, exception.MigrationPreCheckError),
])
def test_hostile_peer_uris_refused(uri, error):
    with pytest.raises(error, match="Refusing|refusing|not a string|cannot be parsed"):
        validate.libvirt_peer_uri(uri)


@pytest.fixture
def no_process(monkeypatch):
    started = []

    def refuse(*args, **kwargs):
        started.append(args)
        raise AssertionError(f"a process was started: {args}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    return started


@pytest.mark.parametrize("value", ["-oProxyCommand=x", "a;b", "../x", "a b", "a" * 300])
def test_ssh_transfer_refuses_hostile_hosts_before_running_anything(tmp_path, no_process,
                                                                      value):
    conf = make_conf(tmp_path)
    src = tmp_path / "disk"
    src.write_bytes(b"x")
    driver = ssh.RsyncTransfer(conf)
    for call in (lambda: driver.make_dir(value, "/var/lib/godwit/instances/x"),
                 lambda: driver.copy_to(str(src), value, "/var/lib/godwit/instances/x/disk"),
                 lambda: driver.remove(value, "/var/lib/godwit/instances/x")):
        with pytest.raises(exception.InvalidTransferHost, match="Refusing to transfer"):
            call()
    assert no_process == []


def test_fake_driver_builds_no_path_from_a_bad_uuid(tmp_path):
    conf = make_conf(tmp_path)
    driver = fake.FakeDriver(conf, "compute1", str(tmp_path / "instances"))
    with pytest.raises(exception.InvalidUUID):
        driver._instance_dir({"uuid": "../../etc"})
    with pytest.raises(exception.InvalidUUID):
        driver.remove_instance_dir("../x", "instance")
    assert validate.uuid(str(uuid.uuid4()))
