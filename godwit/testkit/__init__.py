"""Godwit's test kit: fake clouds for functional tests of code that drives Godwit.

Installing Godwit registers the pytest plugin :mod:`godwit.testkit.plugin`
(fixtures ``godwit_cloud``, ``godwit_cloud_factory``, ``godwit_shared_cloud``,
``godwit_process_cloud`` and ``godwit_process_cloud_factory``); the names in
``__all__`` are the kit's stable interface, versioned by :data:`KIT_VERSION`
(docs/test-kit.md says what the version promises). Anything else reachable
from a FakeCloud (``local_cloud`` and what hangs off it) or a ProcessCloud
beyond what docs/test-kit.md lists is Godwit's internals and may change.
"""

import importlib

#: Major.minor: a minor release only adds; a major one may remove or change.
KIT_VERSION = "1.2"

# Public name -> module. Imported on first use: pytest loads the plugin (and
# so this package) in every run where Godwit is installed, and importing the
# whole of Godwit there would slow down and disturb runs that start no cloud.
_PUBLIC = {
    "APIError": "godwit.testing",
    "Client": "godwit.testing",
    "FakeCloud": "godwit.testkit.cloud",
    "ProcessCloud": "godwit.testkit.processes",
    "FakeHostHandle": "godwit.testkit.hosts",
    "fault": "godwit.testkit.hosts",
    "wait_for": "godwit.testkit.waits",
    "wait_server_status": "godwit.testkit.waits",
    "wait_migration_status": "godwit.testkit.waits",
    "assert_only_on": "godwit.testkit.asserts",
    "assert_no_leftovers": "godwit.testkit.asserts",
    "assert_final": "godwit.testkit.asserts",
    "assert_unchanged": "godwit.testkit.asserts",
}

__all__ = ["KIT_VERSION", *_PUBLIC]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
