"""Instance disks with qemu-img: create, inspect, prepare for block migration."""

import json
import os
import shutil
import subprocess

from godwit import exception


def qemu_img(host, *args):
    try:
        proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise exception.HypervisorError(host=host, reason=f"qemu-img {args[0]}: {e}") from e
    if proc.returncode:
        raise exception.HypervisorError(
            host=host, reason=f"qemu-img {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def info(host, path):
    """qemu-img info as a dict (virtual-size, format, backing-filename, ...).

    ``-U`` reads the header even while a running QEMU holds the image's lock.
    """
    return json.loads(qemu_img(host, "info", "-U", "--output=json", path))


def create(host, path, virtual_size, backing_file=None, backing_format=None):
    """A sparse qcow2 of ``virtual_size`` bytes, over ``backing_file`` if given."""
    args = ["create", "-q", "-f", "qcow2"]
    if backing_file:
        args += ["-b", backing_file, "-F", backing_format or "qcow2"]
    qemu_img(host, *args, path, str(virtual_size))


def supports_direct_io(directory):
    """True if files in ``directory`` can be opened with O_DIRECT (cache='none').

    tmpfs and some FUSE file systems cannot; QEMU would then fail to open a
    disk with cache='none'.
    """
    probe = os.path.join(directory, ".godwit-directio-probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def ensure_backing_file(host, path, source_path=None):
    """Make sure a backing image exists at ``path`` on this host.

    Both test hosts live on one machine, so a missing image is copied from
    ``source_path`` through the local file system. Real hosts need their image
    cache pre-seeded (or a transfer layer, not written yet); without it this
    raises, naming the missing file.
    """
    if os.path.exists(path):
        return False
    if source_path and os.path.exists(source_path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".part"
        shutil.copyfile(source_path, tmp)
        os.replace(tmp, path)
        return True
    raise exception.HypervisorError(
        host=host, reason=f"backing image {path} of the instance's disk is missing on "
                          f"{host}; pre-seed the image cache on every host")
