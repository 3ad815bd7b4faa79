"""Fixtures for tests/transfer: a real sshd on 127.0.0.1 (see helpers.py)."""

import subprocess

import pytest

from tests.transfer.helpers import SshServer, in_ci, require_tools


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One real sshd on 127.0.0.1 for the session (helpers.SshServer)."""
    require_tools()
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        if in_ci():
            pytest.fail(f"cannot start the test sshd: {e}")
        pytest.skip(f"cannot start the test sshd: {e}")
    yield server
    server.stop()


@pytest.fixture
def tools():
    """The qemu and ssh tools are installed (installed now in CI)."""
    require_tools()
