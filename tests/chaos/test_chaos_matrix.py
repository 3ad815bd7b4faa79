"""The chaos matrix (tests/chaos/matrix.py), run with real processes.

Four runs, each a deployment of its own over RabbitMQ and PostgreSQL with
every case of the run side by side (tests/chaos/runner.py): live migration
with a compute agent as the victim, cold migration and resize likewise, and
the conductor killed, restarted at once or after the deadlines.
"""

import os

import pytest

from tests.chaos import matrix as mx
from tests.chaos import runner

AGENTS = ("source", "destination")


def _run(chaos_cloud, keys):
    cases, hosts, host_options = runner.plan(keys)
    cloud = chaos_cloud(hosts=hosts, options=mx.OPTIONS, host_options=host_options)
    run = runner.Run(cloud, cases)
    failures = run.execute()
    print(runner.report(cases))
    assert not failures, "\n".join(failures)


def test_live_migration_agents_killed(chaos_cloud):
    _run(chaos_cloud, mx.live_cases(victims=AGENTS))


def test_cold_migration_and_resize_agents_killed(chaos_cloud):
    _run(chaos_cloud, mx.cold_cases(victims=AGENTS))


@pytest.mark.parametrize("mode", mx.MODES)
def test_conductor_killed(chaos_cloud, mode):
    _run(chaos_cloud, mx.live_cases(victims=("conductor",), modes=(mode,)) +
         mx.cold_cases(victims=("conductor",), modes=(mode,)))


def test_published_matrix_is_current():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "crash-safety.md")
    with open(path) as f:
        text = f.read()
    for part in (mx.phase_tables(), mx.matrix_table()):
        assert part.strip() in text, ("docs/crash-safety.md is stale: regenerate its tables "
                                      "with python -m tests.chaos.matrix")
