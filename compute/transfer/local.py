"""Transfer within this machine's file system.

For compute hosts that share the instance path (NFS, CephFS ... mounted at the
same place everywhere) and for test set-ups that run several hosts on one
machine: the destination path is reached directly, ``dest_host`` is checked
(like every driver does, so that callers behave the same with every driver)
but otherwise ignored.

Copies use ``cp --sparse=always`` (from an argument list, no shell) rather
than :func:`shutil.copyfile`: on Linux shutil copies with ``sendfile``, which
writes every zero of a 1 TiB sparse image as data and fills the destination's
disk, while cp finds the holes (``SEEK_DATA``/``SEEK_HOLE``) and, with
``always``, also turns runs of zeros that were written as data into holes. A
qcow2 preallocated with ``preallocation=metadata`` or a raw image keeps its
small allocation.
"""

import os
import shutil
import subprocess
import uuid

from oslo_log import log as logging

from compute.transfer import base
from godwit import exception

LOG = logging.getLogger(__name__)


class LocalTransfer(base.TransferDriver):
    """``[transfer] driver = local``: shared instance path or the same machine."""

    name = "local"

    def copy_to(self, local_path, dest_host, dest_path):
        base.validate_host(dest_host)
        base.validate_remote_path(dest_path)
        src = base.validate_local_source(local_path)
        if os.path.exists(dest_path) and os.path.samefile(src, dest_path):
            # Shared storage: source and destination are the same file.
            LOG.debug("%s is already %s on %s (shared path); nothing to copy",
                      src, dest_path, dest_host)
            return
        # Into a temporary name beside the destination, renamed when complete.
        tmp = os.path.join(os.path.dirname(dest_path),
                           f".{os.path.basename(dest_path)}.{uuid.uuid4().hex[:8]}.part")
        # -p keeps mode, ownership (when root) and times, like rsync -a.
        cmd = ["cp", "--sparse=always", "-p", "--", src, tmp]
        action = f"cp {src} -> {dest_path} (local, for host {dest_host})"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, env=dict(os.environ, LC_ALL="C"))
        except FileNotFoundError as e:
            raise exception.TransferToolNotFound(tool="cp", package="coreutils") from e
        try:
            if proc.returncode:
                raise exception.TransferFailed(
                    action=action, code=proc.returncode,
                    stderr=proc.stderr.strip()[-1500:] or "(no output)")
            os.replace(tmp, dest_path)
        except OSError as e:
            raise exception.TransferFailed(action=action, code=f"errno {e.errno}",
                                           stderr=str(e)) from e
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        LOG.info("Copied %s to %s (local transfer for %s)", src, dest_path, dest_host)

    def make_dir(self, dest_host, path):
        base.validate_host(dest_host)
        base.validate_remote_path(path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise exception.TransferFailed(action=f"mkdir -p {path} (local)",
                                           code=f"errno {e.errno}", stderr=str(e)) from e

    def remove(self, dest_host, path):
        base.validate_host(dest_host)
        base.validate_removable(path)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
        except FileNotFoundError:
            pass  # removed meanwhile: what we wanted
        except OSError as e:
            raise exception.TransferFailed(action=f"rm -rf {path} (local)",
                                           code=f"errno {e.errno}", stderr=str(e)) from e

    def exists(self, dest_host, path):
        base.validate_host(dest_host)
        base.validate_remote_path(path)
        return os.path.exists(path)
