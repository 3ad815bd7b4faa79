"""Shared fixtures: an in-process cloud, and real services when a test needs them.

The in-process cloud is the test kit's (godwit/testkit, docs/test-kit.md),
whose pytest plugin installing Godwit registers: our functional tests use
what our users' tests use.
"""

import os
import socket
import subprocess
import uuid
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

from godwit.testkit import cloud as testkit_cloud  # noqa: E402

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
    """A test cloud's configuration, as the test kit makes it."""
    return testkit_cloud.make_conf(state_path, options=overrides)


class SuiteCloud:
    """A test kit FakeCloud for Godwit's own tests, which also reach into its
    internals (conductor, computes, db, stop_compute, ...: LocalCloud's)."""

    def __init__(self, kit_cloud):
        self.kit_cloud = kit_cloud

    def __getattr__(self, name):
        try:
            return getattr(self.kit_cloud, name)
        except AttributeError:
            return getattr(self.kit_cloud.local_cloud, name)


@pytest.fixture
def cloud_factory(godwit_cloud_factory):
    """The kit's factory with our defaults: three hosts, options as keywords."""
    def make(hosts=("compute1", "compute2", "compute3"), host_paths=None,
             compute_rpc_version=None, conductor_rpc_version=None, **conf_overrides):
        return SuiteCloud(godwit_cloud_factory(hosts=hosts, host_paths=host_paths,
                                               options=conf_overrides,
                                               compute_rpc_version=compute_rpc_version,
                                               conductor_rpc_version=conductor_rpc_version))

    return make


@pytest.fixture
def cloud(cloud_factory):
    """Conductor, three fake hosts sharing one instance directory, and the API."""
    return cloud_factory()
