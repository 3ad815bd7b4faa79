"""The services as separate processes over the real RabbitMQ and PostgreSQL.

godwit-manage creates the schema, then godwit-conductor, two godwit-compute
agents and godwit-api run as their own processes, exactly as deployed; the
test live-migrates a server both ways through the REST API, watches a killed
agent go down, and stops every service with SIGTERM.
"""

import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from godwit.testing import APIError, Client, fake_host, wait_for

BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = {}
        self.specs = {}

    def start(self, name, command, config):
        # A service started again (after a kill) appends to its log.
        log = open(self.tmp_path / f"{name}.log", "a" if name in self.specs else "w")
        self.specs[name] = (command, config)
        self.procs[name] = (subprocess.Popen(
            [os.path.join(BIN, command), "--config-file", str(config)],
            stdout=log, stderr=subprocess.STDOUT), log)

    def restart(self, name):
        """Start a killed service again with the same command and config."""
        self.start(name, *self.specs[name])

    def terminate(self, name, timeout=15):
        proc, log = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        finally:
            log.close()

    def kill(self, name):
        proc, log = self.procs.pop(name)
        proc.kill()
        proc.wait()
        log.close()

    def logs(self):
        out = []
        for path in sorted(self.tmp_path.glob("*.log")):
            out.append(f"==== {path.name}\n" + path.read_text()[-3000:])
        return "\n".join(out)

    def cleanup(self):
        for name in list(self.procs):
            self.kill(name)


def write_config(path, state, rabbit, db_url, exchange, host=None, api_port=None):
    lines = ["[DEFAULT]", f"transport_url = {rabbit}", f"control_exchange = {exchange}",
             f"state_path = {state}", f"instances_path = {state}/instances",
             "report_interval = 1", "service_down_time = 4", "rpc_response_timeout = 20",
             f"log_file = {path.with_suffix('.log')}"]
    if host:
        lines.append(f"host = {host}")
    lines += ["[database]", f"connection = {db_url}"]
    if api_port:
        lines += ["[api]", "listen = 127.0.0.1", f"port = {api_port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def deployment(tmp_path, rabbit_vhost, postgres_url):
    tag = uuid.uuid4().hex[:8]
    hosts = [f"mp-a-{tag}", f"mp-b-{tag}"]
    state = tmp_path / "state"
    state.mkdir()
    exchange = f"godwit-test-{tag}"
    port = free_port()
    procs = Processes(tmp_path)
    conf = lambda name, **kw: write_config(tmp_path / f"{name}.conf", state, rabbit_vhost,  # noqa
                                            postgres_url, exchange, **kw)
    subprocess.run([os.path.join(BIN, "godwit-manage"), "--config-file",
                    str(conf("manage")), "db", "sync"], check=True, capture_output=True)
    procs.start("conductor", "godwit-conductor", conf("conductor", host=f"cond-{tag}"))
    for h in hosts:
        procs.start(h, "godwit-compute", conf(h, host=h))
    procs.start("api", "godwit-api", conf("api", api_port=port))
    client = Client(f"http://127.0.0.1:{port}/v2.1")
    try:
        def ready():
            try:
                up = {s["host"] for s in client.services() if s["state"] == "up"}
            except Exception:
                return False
            return set(hosts) <= up
        wait_for("both compute agents up", ready, timeout=60, interval=0.2)
        yield client, hosts, state, procs
    except BaseException:
        print(procs.logs())
        raise
    finally:
        procs.cleanup()


def test_separate_processes_over_rabbitmq_and_postgresql(deployment):
    client, (a, b), state, procs = deployment
    hosts_path = str(state / "fake-hosts")
    try:
        sid = client.create_server("mp-vm", host=a)["id"]
        assert client.server(sid)["OS-EXT-SRV-ATTR:host"] == a
        for src, dst in ((a, b), (b, a)):
            client.live_migrate(sid, host=dst)
            m = client.wait_migration(sid, timeout=60)
            assert m["status"] == "completed", m
            assert (m["source_compute"], m["dest_compute"]) == (src, dst)
            server = client.server(sid)
            assert server["OS-EXT-SRV-ATTR:host"] == dst
            assert server["OS-EXT-STS:task_state"] is None
            assert sid in fake_host(hosts_path, dst).snapshot()["domains"]
            assert fake_host(hosts_path, src).is_empty_for(sid)
        assert len(client.migrations(instance_uuid=sid)) == 2

        # An agent that dies is reported down, and refused as a destination.
        procs.kill(b)
        wait_for(f"{b} down", lambda: any(s["host"] == b and s["state"] == "down"
                                          for s in client.services()), timeout=30)
        with pytest.raises(APIError) as err:
            client.live_migrate(sid, host=b)
        assert err.value.status == 400 and "is down" in err.value.message
        assert client.server(sid)["OS-EXT-STS:task_state"] is None

        # SIGTERM stops each service cleanly.
        for name in ("api", a, "conductor"):
            assert procs.terminate(name) == 0, procs.logs()
    except BaseException:
        print(procs.logs())
        raise
