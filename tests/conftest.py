"""Shared fixtures: an in-process cloud, and real services when a test needs them."""

import os
import socket
import subprocess
import uuid
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

from godwit import rpc  # noqa: E402
from godwit.cmd import common  # noqa: E402
from godwit.cmd.all import IN_PROCESS_TRANSPORT, LocalCloud  # noqa: E402
from godwit.testing import Client  # noqa: E402

RABBIT_URL = os.environ.get("GODWIT_TEST_RABBIT", "rabbit://guest:guest@127.0.0.1:5672/")
POSTGRES_ADMIN_URL = os.environ.get("GODWIT_TEST_POSTGRES",
                                    "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name, host, port):
    """Use a real service; in CI its absence is a failure, never a skip."""
    if _port_open(host, port):
        return
    message = (f"{name} is not reachable on {host}:{port}; start it (make test does, with "
               "tools/ensure-services.sh)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def rabbit():
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBIT_URL


@pytest.fixture(scope="module")
def rabbit_vhost():
    """The broker URL with a RabbitMQ virtual host of this module's own.

    oslo.messaging's rabbit driver names a topic's queue after the topic
    alone ("conductor"), whatever the control_exchange: two test runs at the
    same time on one broker would share the conductor's queue, and each
    conductor would answer the other run's agents. A vhost separates them.
    """
    require_service("RabbitMQ", "127.0.0.1", 5672)
    url = RABBIT_URL
    vhost = f"godwit-real-{uuid.uuid4().hex[:8]}"
    try:
        for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest",
                                            ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                           timeout=60)
    except (OSError, subprocess.SubprocessError):
        yield url  # no rabbitmqctl here: share the default vhost
        return
    yield url.rstrip("/") + "/" + vhost
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                   timeout=60)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = "godwit_t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    from godwit.db import api as db_api

    db = db_api._databases.pop(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, None)
    if db is not None:
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_conf(state_path, **overrides):
    defaults = {"state_path": (str(state_path), None), "report_interval": (1, None),
                "transport_url": (IN_PROCESS_TRANSPORT, None),
                # Generous: several suites may share these 2 cores and delay
                # heartbeats; tests about down hosts set a shorter time.
                "service_down_time": (10, None), "rpc_response_timeout": (15, None),
                "debug": (False, None)}
    for key, value in overrides.items():
        group = None
        if "." in key:
            group, key = key.split(".", 1)
        defaults[key] = (value, group)
    return common.init([], prog="godwit-test", defaults=defaults)


@pytest.fixture
def cloud_factory(tmp_path):
    clouds = []

    def make(hosts=("compute1", "compute2", "compute3"), host_paths=None, **conf_overrides):
        conf = make_conf(tmp_path / f"state{len(clouds)}", **conf_overrides)
        cloud = LocalCloud(conf, hosts=hosts, api_port=0, host_paths=host_paths).start()
        cloud.client = Client(cloud.api_url)
        clouds.append(cloud)
        return cloud

    yield make
    for cloud in clouds:
        cloud.stop()
    rpc.cleanup()


@pytest.fixture
def cloud(cloud_factory):
    """Conductor, three fake hosts sharing one instance directory, and the API."""
    return cloud_factory()
