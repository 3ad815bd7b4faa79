"""What the transfer drivers refuse before running anything, loading, options."""

import os
import subprocess

import pytest

from compute import transfer
from compute.transfer import base
from compute.transfer.local import LocalTransfer
from compute.transfer.ssh import RsyncTransfer, ScpTransfer
from godwit import exception
from tests.transfer.helpers import make_conf

DRIVERS = ["local", "rsync", "scp"]

BAD_HOSTS = ["-oProxyCommand=x", "a b", "h;rm", "", "-", "host:22", "user@host",
             "h$(id)", "h`id`", "h|x", "h&x", "h'x", 'h"x', "h\nx", "h\tx", "h/x",
             "-host", "a..b", ".host", "host-", "[host]", "[::1", "::g", "fe80::1%e 0",
             "x" * 64, None, 42]
BAD_PATHS = ["../x", "/tmp/a b", "/tmp/$(x)", "relative/x", "/tmp/../etc", "/tmp/..",
             "/tmp/a;b", "", "/tmp/x\n", "/tmp/'q'", '/tmp/"q"', "/tmp/a`b`", "-rf",
             "/tmp/a|b", "/tmp/a&b", "/tmp/~x", "/tmp/*", "/tmp/a\\b", "/tmp/é",
             "/" + "a" * 5000, None]


@pytest.fixture
def no_processes(monkeypatch):
    """Record (and refuse) any process a test would start."""
    started = []

    def refuse(*args, **kwargs):
        started.append(args[0] if args else kwargs.get("args"))
        raise AssertionError(f"a process was started: {started[-1]!r}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    monkeypatch.setattr(os, "posix_spawnp", refuse)
    return started


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "disk.qcow2"
    path.write_bytes(b"data")
    return str(path)


def driver_for(name, tmp_path):
    key = tmp_path / "key"
    key.write_text("not used: nothing runs\n")
    return transfer.load(make_conf(name, ssh_key_file=str(key),
                                   ssh_known_hosts_file=str(tmp_path / "kh")))


def calls(driver, source, host, path):
    return {"copy_to": lambda: driver.copy_to(source, host, path),
            "make_dir": lambda: driver.make_dir(host, path),
            "remove": lambda: driver.remove(host, path),
            "exists": lambda: driver.exists(host, path)}


@pytest.mark.parametrize("name", DRIVERS)
def test_bad_hosts_are_refused_before_any_process(name, tmp_path, source, no_processes):
    driver = driver_for(name, tmp_path)
    marker = tmp_path / "marker"
    hosts = BAD_HOSTS + [f"h;touch {marker}", f"$(touch {marker})"]
    for host in hosts:
        for op, call in calls(driver, source, host, str(tmp_path / "dest")).items():
            with pytest.raises(exception.InvalidTransferHost) as e:
                call()
            assert e.value.code == 400, (host, op)
            assert "Refusing to transfer to host" in str(e.value)
    assert no_processes == []
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ["disk.qcow2", "key"]


@pytest.mark.parametrize("name", DRIVERS)
def test_bad_paths_are_refused_before_any_process(name, tmp_path, source, no_processes):
    driver = driver_for(name, tmp_path)
    marker = tmp_path / "marker"
    paths = BAD_PATHS + [f"/tmp/$(touch {marker})", f"/tmp/x;touch {marker}"]
    for path in paths:
        for op, call in calls(driver, source, "127.0.0.1", path).items():
            with pytest.raises(exception.InvalidTransferPath) as e:
                call()
            assert e.value.code == 400, (path, op)
    assert no_processes == []
    assert not marker.exists()


@pytest.mark.parametrize("name", DRIVERS)
def test_remove_refuses_top_level_directories(name, tmp_path, no_processes):
    driver = driver_for(name, tmp_path)
    for path in ("/", "/etc", "/var/", "/tmp/.", "//usr"):
        with pytest.raises(exception.InvalidTransferPath):
            driver.remove("127.0.0.1", path)
    assert no_processes == []


@pytest.mark.parametrize("name", DRIVERS)
def test_copy_needs_an_existing_local_file(name, tmp_path, no_processes):
    driver = driver_for(name, tmp_path)
    with pytest.raises(exception.InvalidTransferPath, match="not an existing regular file"):
        driver.copy_to(tmp_path / "missing", "127.0.0.1", "/tmp/x")
    with pytest.raises(exception.InvalidTransferPath, match="not an existing regular file"):
        driver.copy_to(tmp_path, "127.0.0.1", "/tmp/x")
    assert no_processes == []


@pytest.mark.parametrize("host, canonical", [
    ("compute1", "compute1"), ("compute-1.example.org", "compute-1.example.org"),
    ("10.0.0.5", "10.0.0.5"), ("::1", "::1"), ("[2001:db8::5]", "2001:db8::5"),
    ("fe80::1%eth0", "fe80::1%eth0"), ("a" * 63, "a" * 63)])
def test_good_hosts(host, canonical):
    assert base.validate_host(host) == canonical


@pytest.mark.parametrize("path", ["/var/lib/godwit/instances/6f1c-aa/disk", "/tmp/x",
                                  "/a/b_c.d-e/F9", "/tmp/./x"])
def test_good_paths(path):
    assert base.validate_remote_path(path) == path


def test_load_each_driver_and_unknown_names():
    conf = make_conf("local")
    assert type(transfer.load(conf)) is LocalTransfer
    assert type(transfer.load(conf, "rsync")) is RsyncTransfer
    assert type(transfer.load(make_conf("scp"))) is ScpTransfer
    with pytest.raises(exception.TransferDriverNotFound) as e:
        transfer.load(make_conf("ftp"))
    assert "'ftp'" in str(e.value)
    assert "godwit.transfer_drivers: local, rsync, scp" in str(e.value)


def test_defaults():
    conf = make_conf("local")
    opts = conf.transfer
    assert (opts.driver, opts.ssh_user, opts.ssh_port, opts.ssh_key_file,
            opts.ssh_known_hosts_file, opts.ssh_connect_timeout, opts.bandwidth_limit_kbps) \
        == ("local", "", 22, "", "", 10, 0)
    assert opts.rsync_options == ["--sparse", "--whole-file"]


@pytest.mark.parametrize("option, value, match", [
    ("ssh_key_file", "/tmp/my key", "absolute path"),
    ("ssh_key_file", "relative/key", "absolute path"),
    ("ssh_key_file", "/nonexistent/key", "no such file"),
    ("ssh_known_hosts_file", "/tmp/a'b", "absolute path"),
    ("ssh_user", "root;id", "user name"),
    ("ssh_user", "-oProxyCommand=x", "user name"),
    ("ssh_user", "a b", "user name"),
    ("rsync_options", ["-e", "sh -c x"], "remote shell"),
    ("rsync_options", ["--rsh=sh"], "remote shell"),
    ("rsync_options", ["sparse"], "rsync option"),
])
def test_unusable_options_are_refused_at_load(option, value, match):
    for name in ("rsync",) if option == "rsync_options" else ("rsync", "scp"):
        with pytest.raises(exception.InvalidTransferConfig, match=match):
            transfer.load(make_conf(name, **{option: value}))


class Recorder:
    def __init__(self):
        self.cmds = []

    def __call__(self, cmd, **kwargs):
        self.cmds.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")


def test_command_lines(tmp_path, source, monkeypatch):
    key = tmp_path / "id_ed25519"
    key.write_text("k")
    opts = dict(ssh_user="godwit", ssh_port=2222, ssh_key_file=str(key),
                ssh_known_hosts_file=str(tmp_path / "known_hosts"),
                ssh_connect_timeout=7, bandwidth_limit_kbps=100)
    rec = Recorder()
    monkeypatch.setattr(subprocess, "run", rec)

    transfer.load(make_conf("rsync", **opts)).copy_to(source, "::1", "/srv/i/disk")
    rsync = rec.cmds.pop()
    e = rsync.index("-e")
    assert rsync[:e] == ["rsync", "-a", "--sparse", "--whole-file", "--bwlimit=100"]
    assert rsync[e + 2:] == ["--", source, "godwit@[::1]:/srv/i/disk"]
    rsh = rsync[e + 1].split(" ")
    assert rsh[:3] == ["ssh", "-p", "2222"]
    for opt in ("BatchMode=yes", "ConnectTimeout=7", "StrictHostKeyChecking=accept-new",
                f"UserKnownHostsFile={tmp_path}/known_hosts", "IdentitiesOnly=yes"):
        assert opt in rsh
    assert rsh[rsh.index("-i") + 1] == str(key)

    transfer.load(make_conf("scp", **opts)).copy_to(source, "compute2", "/srv/i/disk")
    scp, mv = rec.cmds[-2:]
    assert scp[:4] == ["scp", "-p", "-P", "2222"]
    assert scp[scp.index("-l") + 1] == "800"  # Kbit/s
    assert scp[-3:] == ["--", source, "godwit@compute2:/srv/i/disk.part"]
    assert mv[:3] == ["ssh", "-p", "2222"]
    assert mv[-7:] == ["--", "godwit@compute2", "mv", "-f", "--", "/srv/i/disk.part",
                       "/srv/i/disk"]

    driver = transfer.load(make_conf("scp", ssh_port=2200))  # no user, key, known_hosts
    driver.make_dir("compute2", "/srv/i")
    driver.remove("compute2", "/srv/i")
    driver.exists("compute2", "/srv/i")
    ssh_opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o",
                "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
    assert rec.cmds[-3:] == [
        ["ssh", "-p", "2200", *ssh_opts, "--", "compute2", "mkdir", "-p", "--", "/srv/i"],
        ["ssh", "-p", "2200", *ssh_opts, "--", "compute2", "rm", "-rf", "--", "/srv/i"],
        ["ssh", "-p", "2200", *ssh_opts, "--", "compute2", "test", "-e", "/srv/i"]]


@pytest.mark.parametrize("name, tool, package", [("rsync", "rsync", "rsync"),
                                                 ("scp", "scp", "openssh-client")])
def test_missing_tools_say_what_to_install(name, tool, package, tmp_path, source,
                                           monkeypatch):
    driver = transfer.load(make_conf(name))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(exception.TransferToolNotFound) as e:
        driver.copy_to(source, "127.0.0.1", "/tmp/x")
    assert str(e.value) == (f"{tool} is not installed on this host (not found on PATH); "
                            f"install the {package} package.")
    with pytest.raises(exception.TransferToolNotFound, match="openssh-client"):
        driver.exists("127.0.0.1", "/tmp/x")
