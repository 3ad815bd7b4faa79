"""Instance disk images with qemu-img: inspect, create, flatten, grow.

Used by cold migration and resize: the source flattens a qcow2 overlay onto
its backing file (:func:`flatten`) so that one standalone file can be copied
to the destination (see :mod:`compute.transfer`), and resize grows the root
disk (:func:`resize`), never shrinks it.

Every call runs qemu-img from an argument list, never through a shell. Paths
are made absolute first: an argument that starts with ``/`` can be neither
mistaken for an option (``-...``) nor for a QEMU protocol prefix (``nbd:``,
``http:`` ...; QEMU only looks for a protocol before the first ``/``).

Errors are :mod:`godwit.exception` classes: :class:`QemuImgNotFound` when
qemu-img is missing, :class:`DiskNotFound` for a missing image,
:class:`InvalidDiskRequest` for bad arguments, :class:`DiskShrinkRefused`, and
:class:`DiskOperationFailed` (with qemu-img's exit code and stderr) for the
rest.
"""

import json
import math
import os
import subprocess

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)

QEMU_IMG = "qemu-img"
FORMATS = ("qcow2", "raw")
GiB = 1024 ** 3

# Long enough for converting a large image on a slow disk; a hung qemu-img
# (e.g. waiting on dead NFS) still ends with an error instead of forever.
CONVERT_TIMEOUT = 6 * 3600
SHORT_TIMEOUT = 120


def _qemu_img(*args, timeout=SHORT_TIMEOUT):
    """Run ``qemu-img <args>`` and return its stdout.

    :raises QemuImgNotFound: qemu-img is not installed.
    :raises DiskOperationFailed: it exits non-zero or times out.
    """
    cmd = [QEMU_IMG, *args]
    LOG.debug("Running %s", cmd)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL,
                              env=dict(os.environ, LC_ALL="C"))
    except FileNotFoundError as e:
        raise exception.QemuImgNotFound(binary=QEMU_IMG) from e
    except subprocess.TimeoutExpired as e:
        raise exception.DiskOperationFailed(
            command=" ".join(cmd), code="none (killed)",
            stderr=f"no result after {timeout} s") from e
    except OSError as e:
        raise exception.DiskOperationFailed(command=" ".join(cmd), code=e.errno,
                                            stderr=str(e)) from e
    if proc.returncode:
        raise exception.DiskOperationFailed(
            command=" ".join(cmd), code=proc.returncode,
            stderr=proc.stderr.strip()[-2000:] or "(no output)")
    return proc.stdout


def _check_format(fmt, what="fmt"):
    if fmt not in FORMATS:
        raise exception.InvalidDiskRequest(
            reason=f"{what} {fmt!r} is not supported; use one of {', '.join(FORMATS)}")


def _check_size(size_bytes, what="size"):
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0:
        raise exception.InvalidDiskRequest(
            reason=f"{what} must be a positive number of bytes, not {size_bytes!r}")


def _existing(path):
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise exception.DiskNotFound(path=path)
    return path


def _gib(n):
    """Bytes as GiB for messages: '10' for whole GiB, else two decimals."""
    value = n / GiB
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def info(path):
    """Describe a disk image.

    Reads only the image's header, with ``-U`` (``--force-share``) so that it
    also works on an image a running QEMU holds locked.

    :param path: the image file.
    :returns: ``{"format": "qcow2", "virtual_size": <bytes the guest sees>,
        "actual_size": <bytes allocated on the host's disk>, "backing_file":
        <absolute path or None>, "backing_format": <format or None>}``.
    :raises DiskNotFound: ``path`` does not exist.
    :raises QemuImgNotFound: qemu-img is not installed.
    :raises DiskOperationFailed: qemu-img cannot read the image.
    """
    path = _existing(path)
    data = json.loads(_qemu_img("info", "-U", "--output=json", path))
    backing = data.get("full-backing-filename") or data.get("backing-filename")
    if backing:
        # qemu resolves a relative backing file against the overlay's directory.
        backing = os.path.normpath(os.path.join(os.path.dirname(path), backing))
    return {
        "format": data.get("format"),
        "virtual_size": data.get("virtual-size"),
        "actual_size": data.get("actual-size"),
        "backing_file": backing or None,
        "backing_format": data.get("backing-filename-format") if backing else None,
    }


def create(path, size_bytes=None, fmt="qcow2", backing_file=None, backing_fmt="qcow2"):
    """Create a sparse disk image.

    :param path: the new image file; its directory must exist.
    :param size_bytes: virtual size in bytes. Optional with a backing file:
        the image then has the backing file's size.
    :param fmt: ``qcow2`` or ``raw``.
    :param backing_file: make a qcow2 overlay on this image (copy-on-write).
        A relative name is resolved against ``path``'s directory and recorded
        as given.
    :param backing_fmt: format of ``backing_file``, recorded in the overlay so
        that QEMU never has to guess it.
    :returns: :func:`info` of the new image.
    :raises InvalidDiskRequest: bad format or size, a backing file for a raw
        image, no size and no backing file, or ``path`` already exists.
    :raises DiskNotFound: the backing file does not exist.
    :raises QemuImgNotFound: qemu-img is not installed.
    :raises DiskOperationFailed: qemu-img fails.
    """
    path = os.path.abspath(os.fspath(path))
    _check_format(fmt)
    args = ["create", "-q", "-f", fmt]
    if backing_file is not None:
        if fmt != "qcow2":
            raise exception.InvalidDiskRequest(
                reason=f"a {fmt} image cannot have a backing file; use qcow2")
        _check_format(backing_fmt, "backing_fmt")
        backing_file = os.fspath(backing_file)
        resolved = backing_file if os.path.isabs(backing_file) else os.path.join(
            os.path.dirname(path), backing_file)
        _existing(resolved)
        if not os.path.isabs(backing_file):
            # Keep the relative name qemu records, but never one that looks
            # like an option or a protocol.
            backing_file = "./" + backing_file
        args += ["-b", backing_file, "-F", backing_fmt]
    if size_bytes is None:
        if backing_file is None:
            raise exception.InvalidDiskRequest(
                reason=f"creating {path} needs size_bytes when there is no backing file")
    else:
        _check_size(size_bytes, "size_bytes")
    if os.path.lexists(path):
        raise exception.InvalidDiskRequest(reason=f"{path} already exists")
    args.append(path)
    if size_bytes is not None:
        args.append(str(size_bytes))
    _qemu_img(*args)
    return info(path)


def flatten(src, dest, fmt="qcow2"):
    """Write ``src`` with its whole backing chain merged into a standalone ``dest``.

    Runs ``qemu-img convert -f <src format> -O <fmt> src dest``: the guest's
    view of the disk (overlay over backing file(s)) becomes one image with no
    backing file; clusters that read as zeros stay unallocated, so the result
    is as sparse as the data allows. The source format is read from the
    image's header first and passed with ``-f`` so that qemu-img does not
    probe it (probing a raw image whose guest wrote a qcow2 header would open
    whatever file that header names).

    Written to ``<dest>.part`` and renamed when complete, so ``dest`` is never
    a half-written image. The guest must not be running (cold migration stops
    it first): converting an image QEMU is writing gives an inconsistent copy,
    and qemu-img refuses the locked image.

    :param src: the image to flatten (typically a qcow2 overlay).
    :param dest: the standalone image to write; must not be ``src``.
    :param fmt: format of ``dest``, ``qcow2`` (default) or ``raw``.
    :returns: :func:`info` of ``dest`` (its ``backing_file`` is ``None``).
    :raises DiskNotFound: ``src`` does not exist.
    :raises InvalidDiskRequest: bad format, or ``dest`` is ``src``.
    :raises QemuImgNotFound: qemu-img is not installed.
    :raises DiskOperationFailed: qemu-img fails, or the result still has a
        backing file.
    """
    src = _existing(src)
    dest = os.path.abspath(os.fspath(dest))
    _check_format(fmt)
    if dest == src or (os.path.exists(dest) and os.path.samefile(src, dest)):
        raise exception.InvalidDiskRequest(reason=f"cannot flatten {src} onto itself")
    src_fmt = info(src)["format"]
    tmp = dest + ".part"
    try:
        _qemu_img("convert", "-q", "-f", src_fmt, "-O", fmt, src, tmp,
                  timeout=CONVERT_TIMEOUT)
        result = info(tmp)
        if result["backing_file"] is not None:
            raise exception.DiskOperationFailed(
                command=f"qemu-img convert {src}", code=0,
                stderr=f"the result still has backing file {result['backing_file']}")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    LOG.info("Flattened %s (%s) into %s (%s)", src, src_fmt, dest, fmt)
    return info(dest)


def resize(path, new_size_bytes):
    """Grow a disk image's virtual size (resize to a bigger flavor).

    Only grows: the guest's file systems and partitions fill the old size, so
    cutting the image would destroy data. A smaller size is refused without
    touching the file; the same size does nothing.

    :param path: the image file (guest stopped).
    :param new_size_bytes: the new virtual size in bytes.
    :returns: ``True`` if the image was grown, ``False`` if it already had
        that size.
    :raises DiskShrinkRefused: ``new_size_bytes`` is below the current size.
    :raises DiskNotFound: ``path`` does not exist.
    :raises InvalidDiskRequest: ``new_size_bytes`` is not a positive integer.
    :raises QemuImgNotFound: qemu-img is not installed.
    :raises DiskOperationFailed: qemu-img fails.
    """
    path = _existing(path)
    _check_size(new_size_bytes, "new_size_bytes")
    current = info(path)
    size = current["virtual_size"]
    if new_size_bytes < size:
        raise exception.DiskShrinkRefused(path=path, current_gib=_gib(size),
                                          new_gib=_gib(new_size_bytes),
                                          min_gib=math.ceil(size / GiB))
    if new_size_bytes == size:
        return False
    _qemu_img("resize", "-q", "-f", current["format"], path, str(new_size_bytes))
    LOG.info("Grew %s from %s to %s bytes", path, size, new_size_bytes)
    return True
