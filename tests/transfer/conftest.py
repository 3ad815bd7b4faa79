"""Fixtures for tests/transfer: a real sshd on 127.0.0.1 (tests/sshd.py)."""

import pytest

from tests.sshd import require_tools, sshd_fixture


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One real sshd on 127.0.0.1 for the session (tests.sshd.SshServer)."""
    yield from sshd_fixture(tmp_path_factory)


@pytest.fixture
def tools():
    """The qemu and ssh tools are installed (installed now in CI)."""
    require_tools()
