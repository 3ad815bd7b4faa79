"""Fixtures for tests against two real libvirt hosts (see hosts.py).

``libvirt_hosts`` starts the two daemons once per module. ``deployment``
starts Godwit as it is deployed - godwit-conductor, godwit-api and one
godwit-compute per libvirt host, each a process of its own with its own
config file, over RabbitMQ and a fresh PostgreSQL database - with the
``[libvirt]`` options a test asks for.

In CI (CI=true) a machine that cannot run libvirt fails these tests with the
reason; elsewhere they are skipped.
"""

import os
import time
import uuid

import pytest

from godwit.db import api as db_api
from godwit.db import migration
from godwit.testing import Client, wait_for
from tests.functional.test_multiprocess import Processes, free_port
from tests.real import hosts as hosts_mod


def _unavailable(message):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def libvirt_hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("libvirt-hosts")
    try:
        hosts = hosts_mod.start_hosts(str(root))
    except hosts_mod.HostSetupError as e:
        _unavailable(f"cannot start two libvirt hosts: {e}")
    yield hosts
    hosts_mod.stop_hosts(hosts)


class Deployment:
    def __init__(self, client, names, lv, paths, procs, tmp_path):
        self.client = client
        self.names = names            # Godwit host names, [A, B]
        self.lv = dict(zip(names, lv))  # Godwit host name -> LibvirtHost
        self.paths = dict(zip(names, paths))  # Godwit host name -> instances_path
        self.procs = procs
        self.tmp_path = tmp_path

    def where(self, instance_uuid):
        """{host: domain info} for every libvirt host that has the domain."""
        found = {}
        for name, lv in self.lv.items():
            conn = lv.connect()
            try:
                dom = conn.lookupByUUIDString(instance_uuid)
                found[name] = {"active": bool(dom.isActive()),
                               "persistent": bool(dom.isPersistent()),
                               "state": dom.state()[0]}
            except Exception:
                pass
            finally:
                conn.close()
        return found

    def log(self, name):
        return (self.tmp_path / f"{name}.log").read_text()


def _compute_config(path, common, name, lv, instances_path, options):
    """One agent's config file: ``options`` ({group: {option: value}}) over the
    defaults of these tests (fake volumes, no VIFs, no firewall)."""
    groups = {
        "compute": {"virt_driver": "libvirt", "vif_driver": "noop",
                    "firewall_driver": "noop", "volume_driver": "fake"},
        "libvirt": {"connection_uri": lv.uri, "migration_peer_uri": lv.uri,
                    "live_migration_inbound_addr": lv.address,
                    "live_migration_monitor_interval": 0.25},
    }
    for group, values in options.items():
        groups.setdefault(group, {}).update(values)
    lines = common + [f"host = {name}", f"instances_path = {instances_path}",
                      f"log_file = {path.with_suffix('.log')}"]
    for group, values in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def deployment(request, libvirt_hosts, rabbit_vhost, postgres_url, tmp_path):
    """Call with shared=True|False, [libvirt] options for both hosts or per host
    (``per_host``: {index: {option: value}}) and any other options
    (``options``: {group: {option: value}}, ``host_options``: {index: the same});
    returns a Deployment."""
    procs = Processes(tmp_path)
    made = []

    def make(shared, libvirt_opts=None, per_host=None, options=None, host_options=None):
        started = time.monotonic()
        tag = uuid.uuid4().hex[:8]
        names = [f"lv-a-{tag}", f"lv-b-{tag}"]
        state = tmp_path / "state"
        state.mkdir()
        exchange = f"godwit-real-{tag}"
        port = free_port()
        common = ["[DEFAULT]", f"transport_url = {rabbit_vhost}", f"control_exchange = {exchange}",
                  f"state_path = {state}", "report_interval = 1", "service_down_time = 6",
                  "rpc_response_timeout = 30", "debug = true",
                  # The guests ignore the ACPI button: do not wait Nova's 60 s for them.
                  "shutdown_timeout = 2"]
        db = ["[database]", f"connection = {postgres_url}"]

        def conf(name, *extra):
            path = tmp_path / f"{name}.conf"
            path.write_text("\n".join(common + [f"log_file = {tmp_path / name}.log",
                                                 *extra] + db) + "\n")
            return path

        # What `godwit-manage db sync` and `flavor create` do, without two more
        # interpreter start-ups per test.
        migration.db_sync(postgres_url)
        database = db_api.get_database(postgres_url)
        database.ensure_default_flavors()
        database.flavor_create({"flavorid": "lv.tiny", "name": "lv.tiny", "memory_mb": 128,
                          "vcpus": 1, "root_gb": 1, "ephemeral_gb": 0, "swap": 0})
        # A real kernel (tests/real/guest_kernel.py) wants a little more.
        database.flavor_create({"flavorid": "lv.kernel", "name": "lv.kernel",
                                "memory_mb": 192, "vcpus": 1, "root_gb": 1,
                                "ephemeral_gb": 0, "swap": 0})
        procs.start("conductor", "godwit-conductor", conf("conductor", f"host = cond-{tag}"))
        procs.start("api", "godwit-api", conf("api", "[api]", "listen = 127.0.0.1",
                                               f"port = {port}"))
        # A compute agent's first report sent before the conductor's queue exists
        # is lost and only times out after rpc_response_timeout.
        conductor_log = tmp_path / "conductor.log"
        wait_for("the conductor", lambda: conductor_log.exists() and
                 "Started ConductorManager" in conductor_log.read_text(), timeout=60,
                 interval=0.1)
        paths = []
        for i, (name, lv) in enumerate(zip(names, libvirt_hosts)):
            path = str(state / "instances") if shared else str(state / f"instances-{i}")
            paths.append(path)
            groups = {g: dict(v) for g, v in (options or {}).items()}
            for g, v in ((host_options or {}).get(i) or {}).items():
                groups.setdefault(g, {}).update(v)
            groups.setdefault("libvirt", {}).update(
                dict(libvirt_opts or {}, **((per_host or {}).get(i) or {})))
            # No [database]: compute agents never open it.
            cfg = _compute_config(tmp_path / f"{name}.conf", common, name, lv, path, groups)
            procs.start(name, "godwit-compute", cfg)
        client = Client(f"http://127.0.0.1:{port}/v2.1")

        def ready():
            try:
                up = {s["host"] for s in client.services() if s["state"] == "up"}
            except Exception:
                return False
            return set(names) <= up
        wait_for("both compute agents up", ready, timeout=60, interval=0.2)
        print(f"deployment up in {time.monotonic() - started:.1f} s")
        d = Deployment(client, names, libvirt_hosts, paths, procs, tmp_path)
        made.append(d)
        return d

    try:
        yield make
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            print(procs.logs())
            for lv in libvirt_hosts:
                print(f"==== libvirtd {lv.name}\n{lv.output()[-3000:]}")
        procs.cleanup()
        for lv in libvirt_hosts:
            lv._destroy_domains()  # nothing of one test survives into the next
