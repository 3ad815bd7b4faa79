"""What real services write to their log files: no passwords, and no
tracebacks for refusals.

godwit-conductor, two godwit-compute agents (one whose hypervisor refuses
incoming migrations) and godwit-api run as processes with debug logging,
over RabbitMQ with the password in transport_url and PostgreSQL with a
password in [database] connection (trust authentication ignores it). The
test provokes refusals through the REST API, then reads every log file.
"""

import os
import subprocess
import uuid

import pytest

from godwit.testing import APIError, Client, wait_for
from tests.functional.test_multiprocess import BIN, Processes, free_port, write_config

DB_PASSWORD = "s3cretDBpw-" + uuid.uuid4().hex[:6]
TRACEBACK = "Traceback (most recent call last)"


def _with_db_password(url):
    scheme, rest = url.split("://", 1)
    user, at, host = rest.partition("@")
    assert at and ":" not in user, url
    return f"{scheme}://{user}:{DB_PASSWORD}@{host}"


@pytest.fixture
def logged_deployment(tmp_path, rabbit_vhost, postgres_url):
    assert ":guest@" in rabbit_vhost, "the test looks for the broker password 'guest'"
    tag = uuid.uuid4().hex[:8]
    good, refusing = f"logs-a-{tag}", f"logs-b-{tag}"
    state = tmp_path / "state"
    state.mkdir()
    db_url = _with_db_password(postgres_url)
    port = free_port()
    procs = Processes(tmp_path)

    def conf(name, extra=(), **kw):
        path = write_config(tmp_path / f"{name}.conf", state, rabbit_vhost, db_url,
                            f"godwit-test-{tag}", **kw)
        # debug: oslo.config prints every option at start-up, oslo.messaging
        # its connections; secrets must be masked there too.
        # The service's own log file apart from its stdout, which Processes
        # writes to <name>.log: both are read below.
        text = path.read_text().replace("[DEFAULT]\n", "[DEFAULT]\ndebug = True\n")
        text = text.replace(f"log_file = {path.with_suffix('.log')}",
                            f"log_file = {path.with_suffix('.service.log')}")
        path.write_text(text + "\n".join(extra) + "\n")
        return path

    subprocess.run([os.path.join(BIN, "godwit-manage"), "--config-file", str(conf("manage")),
                    "db", "sync"], check=True, capture_output=True)
    procs.start("conductor", "godwit-conductor", conf("conductor", host=f"cond-{tag}"))
    procs.start(good, "godwit-compute", conf(good, host=good))
    procs.start(refusing, "godwit-compute",
                conf(refusing, host=refusing, extra=["[fake]", "accepts_migrations = False"]))
    procs.start("api", "godwit-api", conf("api", api_port=port))
    client = Client(f"http://127.0.0.1:{port}/v2.1")
    try:
        def ready():
            try:
                return {good, refusing} <= {s["host"] for s in client.services()
                                            if s["state"] == "up"}
            except Exception:
                return False
        wait_for("both compute agents up", ready, timeout=60, interval=0.2)
        yield client, good, refusing, procs, tmp_path
    except BaseException:
        print(procs.logs())
        raise
    finally:
        procs.cleanup()


def refused(call, status):
    with pytest.raises(APIError) as err:
        call()
    assert err.value.status == status, err.value
    return err.value.message


def test_logs_hold_no_passwords_and_no_tracebacks_for_refusals(logged_deployment):
    client, good, refusing, procs, tmp_path = logged_deployment
    sid = client.create_server("logs-vm", host=good)["id"]

    # Refusals decided by the conductor, and one by the destination's pre-check
    # (an agent's RPC endpoint), each answered through the API.
    assert "could not be found" in refused(
        lambda: client.live_migrate(sid, host="no-such-host"), 400)
    assert "already runs on" in refused(lambda: client.live_migrate(sid, host=good), 400)
    message = refused(lambda: client.live_migrate(sid, host=refusing), 400)
    assert refusing in message
    assert "could not be found" in refused(
        lambda: client.live_migrate(str(uuid.uuid4()), host=refusing), 404)
    # A move asked while another runs: 409.
    client.action(sid, "os-stop")
    client.wait_vm(sid, "SHUTOFF", timeout=30)
    refused(lambda: client.live_migrate(sid, host=refusing), 409)
    assert client.server(sid)["OS-EXT-SRV-ATTR:host"] == good

    for name in ("api", good, refusing, "conductor"):
        assert procs.terminate(name) == 0, procs.logs()

    logs = {path.name: path.read_text() for path in sorted(tmp_path.glob("*.log"))}
    assert {f"{n}.service.log" for n in ("conductor", "api", good, refusing)} <= set(logs)
    # The services logged their options (debug): an empty log would prove nothing.
    for name in ("conductor", "api", good):
        text = logs[f"{name}.service.log"]
        assert "transport_url" in text and "database.connection" in text, text[:3000]
    for name, text in logs.items():
        assert DB_PASSWORD not in text, f"{name} shows the database password"
        assert ":guest@" not in text, f"{name} shows the broker password"
        assert TRACEBACK not in text, f"{name} has a traceback:\n{text[-4000:]}"
