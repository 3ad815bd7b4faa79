"""The command-line programs start without Python warning noise.

Each is run as a user runs it (a subprocess of the virtualenv's script, with
Python's default warning filters) and must print no "...Warning:" line on
stderr: neither eventlet's deprecation (oslo.service imports eventlet) nor
cryptography's DSA deprecation (eventlet's green DNS imports dnspython's DSA
module); both are filtered at their source in godwit/__init__.py.
"""

import os
import re
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)
WARNING_LINE = re.compile(r"\w*Warning\b")


@pytest.mark.parametrize("program", ["godwit", "godwit-all", "godwit-api",
                                     "godwit-conductor", "godwit-compute", "godwit-manage"])
def test_help_prints_no_warnings(program):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([os.path.join(BIN, program), "--help"], capture_output=True,
                            text=True, timeout=120, env=env)

    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert [line for line in result.stderr.splitlines() if WARNING_LINE.search(line)] == [], \
        result.stderr
