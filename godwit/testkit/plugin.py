"""The pytest plugin of Godwit's test kit (entry point ``pytest11: godwit``).

Fixtures:

- ``godwit_cloud_factory``: a function that starts a :class:`FakeCloud`;
  every cloud it started is stopped when the test ends.
- ``godwit_cloud``: one cloud, two hosts by default; a test can ask for other
  arguments with ``@pytest.mark.godwit_cloud(hosts=3, options={...})``.
- ``godwit_shared_cloud``: the same, one per test module (a module-level
  ``pytestmark = pytest.mark.godwit_cloud(...)`` sets it).
- ``godwit_process_cloud_factory`` and ``godwit_process_cloud`` (mark
  ``godwit_process_cloud``): a :class:`ProcessCloud`, every service a process
  of its own over RabbitMQ; when a test fails, the end of every service's
  log is added to its report.

``--godwit-database-url`` and ``--godwit-transport-url`` (or the environment
variables GODWIT_KIT_DATABASE_URL, GODWIT_KIT_TRANSPORT_URL) put every cloud
that does not name its own on that database or broker.
"""

import os

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("godwit", "Godwit test kit")
    group.addoption("--godwit-database-url", default=os.environ.get(
        "GODWIT_KIT_DATABASE_URL"), help="database of the kit's clouds (default: SQLite "
        "in each cloud's own directory); give an empty database per test run")
    group.addoption("--godwit-transport-url", default=os.environ.get(
        "GODWIT_KIT_TRANSPORT_URL"), help="oslo.messaging transport of the kit's clouds "
        "(default: in-process); give a RabbitMQ virtual host of their own")


def pytest_configure(config):
    # Godwit's dependencies import eventlet (oslo.service), which warns at the
    # first cloud's start; that warning is about them, not the test.
    config.addinivalue_line("filterwarnings", "ignore:(?s).*Eventlet is deprecated")
    config.addinivalue_line("markers", "godwit_cloud(**kwargs): arguments of the "
                            "godwit_cloud fixture's cloud (hosts, database_url, "
                            "transport_url, options, host_paths, compute_rpc_version, "
                            "conductor_rpc_version)")
    config.addinivalue_line("markers", "godwit_process_cloud(**kwargs): arguments of the "
                            "godwit_process_cloud fixture's cloud (hosts, database_url, "
                            "transport_url, options, host_options, host_paths, conductors)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report gets the logs of the process clouds it started:
    a test that fails across a process boundary is rarely explained by its
    traceback alone."""
    outcome = yield
    report = outcome.get_result()
    clouds = getattr(item, "_godwit_process_clouds", ())
    if report.failed and clouds:
        for cloud in clouds:
            report.sections.append((f"godwit process cloud logs ({cloud.root})",
                                    cloud.logs()))


def _cloud_starter(config, tmp_path_factory, clouds):
    """A function that starts a FakeCloud and keeps it in ``clouds``."""
    database_url = config.getoption("godwit_database_url")
    transport_url = config.getoption("godwit_transport_url")

    def start(hosts=2, database_url=database_url, transport_url=transport_url,
              options=None, host_paths=None, compute_rpc_version=None,
              conductor_rpc_version=None):
        # Imported here, not when pytest loads the plugin: every pytest run where
        # Godwit is installed loads it, and most never start a cloud.
        from godwit.testkit.cloud import FakeCloud

        cloud = FakeCloud(tmp_path_factory.mktemp("godwit-cloud"), hosts=hosts,
                          database_url=database_url, transport_url=transport_url,
                          options=options, host_paths=host_paths,
                          compute_rpc_version=compute_rpc_version,
                          conductor_rpc_version=conductor_rpc_version)
        clouds.append(cloud)
        return cloud

    return start


def _stop_all(clouds):
    for cloud in clouds:
        cloud.stop()
    # The transports are shared per process (godwit.rpc); close them with the
    # last cloud, so that the next ones start on fresh ones.
    from godwit import rpc
    rpc.cleanup()


def _marked_arguments(request):
    marker = request.node.get_closest_marker("godwit_cloud")
    return marker.kwargs if marker else {}


@pytest.fixture
def godwit_cloud_factory(request, tmp_path_factory):
    """Starts FakeClouds (same arguments as FakeCloud, less the state path);
    each is stopped when the test ends."""
    clouds = []
    yield _cloud_starter(request.config, tmp_path_factory, clouds)
    _stop_all(clouds)


@pytest.fixture
def godwit_cloud(request, godwit_cloud_factory):
    """A cloud of the test's own: two hosts, unless a godwit_cloud mark says."""
    return godwit_cloud_factory(**_marked_arguments(request))


@pytest.fixture(scope="module")
def godwit_shared_cloud(request, tmp_path_factory):
    """One cloud for every test of a module (a godwit_cloud mark on the module
    sets it). A cloud per test costs a few tenths of a second to start and
    stop; a suite of many small tests can share one, each test working on
    servers of its own."""
    clouds = []
    start = _cloud_starter(request.config, tmp_path_factory, clouds)
    yield start(**_marked_arguments(request))
    _stop_all(clouds)


@pytest.fixture
def godwit_process_cloud_factory(request, tmp_path_factory):
    """Starts ProcessClouds (same arguments as ProcessCloud, less the root
    directory); each is stopped when the test ends, no process left behind."""
    from godwit.testkit.processes import ProcessCloud

    clouds = []
    # Where the report hook finds them, for a failed test's logs.
    request.node._godwit_process_clouds = clouds

    def start(**kwargs):
        # A cloud that fails to start stops itself, its logs in the error.
        cloud = ProcessCloud(tmp_path_factory.mktemp("godwit-process-cloud"), **kwargs)
        clouds.append(cloud)
        return cloud

    try:
        yield start
    finally:
        errors = []
        for cloud in clouds:
            try:
                cloud.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then raise
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def godwit_process_cloud(request, godwit_process_cloud_factory):
    """A ProcessCloud of the test's own: two hosts, unless a godwit_process_cloud
    mark says."""
    marker = request.node.get_closest_marker("godwit_process_cloud")
    return godwit_process_cloud_factory(**(marker.kwargs if marker else {}))
