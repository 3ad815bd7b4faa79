"""The ``chaos_cloud`` fixture: ChaosClouds (tests/chaos/harness.py) a test starts.

Built on ``rabbit_vhost`` and ``postgres_url`` of tests/conftest.py. Each
cloud gets a RabbitMQ vhost of its own, made next to the module's one and
deleted at teardown: oslo.messaging names a topic's queue after the topic
alone, so two clouds in one vhost - including one test's cloud and the
next test's in the same module - would share the "conductor" and
"compute.<host>" queues, and a message a SIGKILLed service left unread
would reach the next cloud's services. The first cloud of a test uses the
test's ``postgres_url``; any further one gets a fresh database of its own.

At teardown every cloud is stopped (no service, no fake migration job left)
and, if the test failed, the end of every service's log is printed.
"""

import subprocess
import uuid
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from tests.chaos.harness import ChaosCloud


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _new_vhost(module_url):
    """(url, vhost) of a fresh vhost on the broker of ``module_url``; (module_url,
    None) where rabbitmqctl cannot make one (rabbit_vhost then shares "/" too)."""
    parts = urlsplit(module_url)
    module_vhost = unquote(parts.path.lstrip("/"))
    if not module_vhost or module_vhost == "/":
        return module_url, None
    vhost = f"{module_vhost}-chaos-{uuid.uuid4().hex[:6]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, unquote(parts.username or "guest"),
                     ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError):
        return module_url, None
    return urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", "")), vhost


def _new_database():
    import sqlalchemy as sa

    from tests.conftest import POSTGRES_ADMIN_URL

    name = "godwit_t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_database(url):
    import sqlalchemy as sa

    from godwit.db import api as db_api
    from tests.conftest import POSTGRES_ADMIN_URL

    db = db_api._databases.pop(url, None)
    if db is not None:
        db.engine.dispose()
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" '
                                 "WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture
def chaos_cloud(request, tmp_path, rabbit_vhost, postgres_url):
    """``chaos_cloud(hosts=("host-a", "host-b"), conductors=("cond-a",), options=None,
    host_options=None, shared_instances=False, start=True)``: a ChaosCloud in
    ``tmp_path/cloud<N>``, started unless ``start=False``."""
    clouds, vhosts, databases = [], [], []

    def make(hosts=("host-a", "host-b"), conductors=("cond-a",), start=True, **kwargs):
        db_url = postgres_url
        if clouds:
            db_url = _new_database()
            databases.append(db_url)
        url, vhost = _new_vhost(rabbit_vhost)
        if vhost:
            vhosts.append(vhost)
        cloud = ChaosCloud(tmp_path / f"cloud{len(clouds)}", url, db_url, hosts,
                           conductors=conductors, **kwargs)
        clouds.append(cloud)
        if start:
            cloud.start()
        return cloud

    try:
        yield make
    finally:
        report = getattr(request.node, "rep_call", None)
        failed = report is None or report.failed
        errors = []
        try:
            for cloud in clouds:
                try:
                    cloud.stop()
                except Exception as e:  # noqa: BLE001 - stop the others, then raise
                    errors.append(e)
                if failed:
                    print(f"======== logs of {cloud.root}\n{cloud.logs()}")
            if errors:
                raise errors[0]
        finally:
            for vhost in vhosts:
                subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost],
                               capture_output=True, timeout=60)
            for url in databases:
                _drop_database(url)
