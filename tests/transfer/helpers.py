"""Helpers for the disk and disk-transfer tests.

The test sshd (:class:`SshServer`, the session fixture ``sshd`` in
conftest.py) and the tool checks live in ``tests/sshd.py``, shared with
tests/real and the benchmark; they are re-exported here for the tests.
"""

import os
import subprocess

from tests.sshd import (  # noqa: F401 - re-exported for the tests
    ENSURE_SSH,
    ROOT,
    SEARCH_PATH,
    TOOLS,
    SshServer,
    free_port,
    in_ci,
    make_conf,
    port_open,
    require_tools,
    tool,
)


def qemu_io(path, command, fmt="qcow2", read_only=False):
    """Run one qemu-io command; fail the test with its output if it fails."""
    args = [tool("qemu-io"), "-f", fmt, *(["-r"] if read_only else []), "-c", command,
            str(path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "verification failed" not in proc.stdout, (
        f"qemu-io {command!r} on {path} failed (exit {proc.returncode}):\n"
        f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def qemu_img_compare(a, b, fmt_a="qcow2", fmt_b="qcow2"):
    """Whether two images hold the same guest-visible data."""
    proc = subprocess.run([tool("qemu-img"), "compare", "-f", fmt_a, "-F", fmt_b, str(a),
                           str(b)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def allocated(path):
    """Bytes the file occupies on disk (du), as opposed to its apparent size."""
    return os.stat(path).st_blocks * 512
