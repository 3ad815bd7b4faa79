"""The libvirt hypervisor driver (QEMU/KVM through libvirt-python).

Modules, each readable in one sitting:

* :mod:`.driver` - :class:`LibvirtDriver`, the :class:`compute.virt.base.VirtDriver`
  the compute agent calls;
* :mod:`.host` - the connection to this host's libvirtd and what it says about
  the host (capabilities, CPU, security driver);
* :mod:`.config` - domain XML: built from an instance, rewritten for a
  migration's destination, volume and VIF device mapping;
* :mod:`.disk` - instance disks with qemu-img;
* :mod:`.migration` - :class:`LibvirtMigrationJob`, migrateToURI3 in a thread,
  steered by :mod:`compute.migration_monitor`;
* :mod:`.cold` - cold migration and resize (the
  :class:`compute.virt.base.ColdMigrationDriver` methods, a mixin of the driver).

libvirt-python is imported only here and only when the driver loads, so the
rest of Godwit installs and runs without it (``pip install godwit[libvirt]``).
"""
