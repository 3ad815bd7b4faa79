"""Copying instance disks to another compute host (cold migration, resize).

Drivers are entry points in the stevedore namespace ``godwit.transfer_drivers``
(``local``, ``rsync``, ``scp``), chosen with ``[transfer] driver``; each is a
:class:`compute.transfer.base.TransferDriver`. Callers get one with
:func:`load`::

    from compute import transfer
    driver = transfer.load(conf)
    driver.make_dir(dest_host, instance_dir)
    driver.copy_to(local_disk, dest_host, instance_dir + "/disk")

See docs/cold-migration-transfer.md.
"""

from compute import drivers
from godwit import exception

NAMESPACE = "godwit.transfer_drivers"


def load(conf, name=None):
    """The transfer driver ``name`` (default ``[transfer] driver``), built with ``conf``.

    :param conf: Godwit's ConfigOpts (with the ``[transfer]`` group registered).
    :param name: an entry point name in ``godwit.transfer_drivers``.
    :returns: a :class:`compute.transfer.base.TransferDriver`.
    :raises TransferDriverNotFound: no such entry point, or it fails to import.
    :raises InvalidTransferConfig: the driver refuses the ``[transfer]`` options.
    """
    name = name or conf.transfer.driver
    try:
        # Only the class is loaded here; it is instantiated below so that a
        # configuration error reaches the caller as itself.
        cls = drivers.load_class(NAMESPACE, name)
    except Exception as e:
        raise exception.TransferDriverNotFound(
            name=name, reason=str(e) or type(e).__name__,
            available=", ".join(available()) or "none") from e
    return cls(conf)


def available():
    """Names of the installed transfer drivers."""
    return drivers.available(NAMESPACE)
