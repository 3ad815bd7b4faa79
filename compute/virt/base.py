"""The hypervisor driver interface.

A driver manages the domains of one host. Every method receives plain dicts
(``instance`` is the instances row, ``network_info`` the list of
virtual_interfaces rows, ``block_device_info`` the list of
block_device_mappings rows) and must be safe to call twice: undo methods on
something already gone return quietly. The compute manager never touches the
hypervisor except through this class.
"""

import abc
import os
import shutil
import threading
import time
import uuid

from godwit import exception, validate

#: Name prefix of the shared-storage probe files (never an instance uuid).
PROBE_PREFIX = ".godwit-shared-probe-"

class MigrationJob(abc.ABC):
    """A hypervisor migration in progress, as the monitor sees it.

    Every method is safe to call from the monitor's thread while the job
    runs; steering calls on a finished job do nothing. A subclass calls
    ``super().__init__()`` and, when its job ends, sets ``self._error`` (if
    it failed) and then ``self._done``; :meth:`wait` and :meth:`result` read
    them.
    """

    #: What the migration uses that the operator chose (e.g.
    #: ``parallel_connections``), for the monitor's tuning and so the timeline.
    used = {}

    def __init__(self):
        self._done = threading.Event()
        self._error = None

    @abc.abstractmethod
    def stats(self):
        """Progress now: dict with memory_total/processed/remaining,
        disk_total/processed/remaining (bytes), iteration, dirty_rate and
        bandwidth (bytes/s), expected_downtime_ms, and post_copy/paused flags."""

    def wait(self, timeout):
        """Block up to ``timeout`` seconds; True once the job has ended."""
        return self._done.wait(timeout)

    def result(self):
        """After the end: return if the guest runs on the destination, else raise."""
        if not self._done.is_set():
            raise RuntimeError("migration job still running")
        if self._error is not None:
            raise self._error

    @abc.abstractmethod
    def set_max_downtime(self, ms):
        """Allow the switch-over to pause the guest up to ``ms`` milliseconds."""

    @abc.abstractmethod
    def set_max_speed(self, mib_per_s):
        """Cap the transfer bandwidth (0 = no cap)."""

    @abc.abstractmethod
    def abort(self):
        """Cancel the job; the guest keeps running on the source."""

    @abc.abstractmethod
    def pause(self):
        """Pause the guest on the source so that the copy converges."""

    @abc.abstractmethod
    def start_post_copy(self):
        """Switch to post-copy: run on the destination, pull the rest on demand."""


class PolledMigrationJob(MigrationJob):
    """A job whose end is found by looking (every POLL seconds) rather than told by
    a thread of ours: one that outlived the agent that started it. A subclass
    defines :meth:`_check_done`, which sets ``_error`` and ``_done`` once it ended."""

    POLL = 0.05

    @abc.abstractmethod
    def _check_done(self):
        """Look once; True once the job has ended."""

    def wait(self, timeout):
        deadline = time.monotonic() + (timeout or 0)
        while not self._check_done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.POLL, left))
        return True


class VirtDriver(abc.ABC):
    """A hypervisor host, as the compute manager sees it."""

    def __init__(self, conf, host, instances_path):
        self.conf = conf
        self.host = host
        self.instances_path = instances_path

    def init_host(self):
        """Connect to the hypervisor; called once before the agent serves RPC."""

    def cleanup_host(self):
        """Release connections; called when the agent stops."""

    @abc.abstractmethod
    def get_host_info(self):
        """What the compute node record says about this host.

        :returns: dict with vcpus, memory_mb, local_gb, hypervisor_type,
            hypervisor_version (int), cpu_info (JSON str), security_driver,
            host_ip and instances_path.
        """

    @abc.abstractmethod
    def list_instances(self):
        """UUIDs of the domains that exist on this host."""

    @abc.abstractmethod
    def inspect_instance(self, instance):
        """Where the instance's domain is on this host, for recovery.

        :returns: dict with ``defined`` (a domain exists), ``active`` (it runs,
            or is paused, as the guest: not an incoming shell waiting for a
            migration, not a source that has switched over), ``incoming``,
            ``persistent`` and ``power_state``.
        """

    @abc.abstractmethod
    def list_domains(self):
        """Every domain of Godwit's on this host (for the reconciler): a list of
        :meth:`inspect_instance` dicts, each with its ``instance_uuid``."""

    def list_instance_dirs(self):
        """Instance directories under this host's instances path: a list of dicts
        with ``instance_uuid``, ``path`` and ``kind`` (``instance``, or ``resize``
        for a cold migration's set-aside ``<uuid>_resize``)."""
        out = []
        try:
            names = sorted(os.listdir(self.instances_path))
        except FileNotFoundError:
            return out
        for name in names:
            base_name, resize = (name[:-len("_resize")], True) if name.endswith("_resize") \
                else (name, False)
            try:
                uuid.UUID(base_name)
            except ValueError:
                continue   # not an instance's (_base, probes, an operator's files)
            path = os.path.join(self.instances_path, name)
            if os.path.isdir(path):
                out.append({"instance_uuid": base_name, "path": path,
                            "kind": "resize" if resize else "instance"})
        return out

    def remove_instance_dir(self, instance_uuid, kind):
        """Delete an orphan instance directory (``kind`` as list_instance_dirs says)."""
        # A path made from a checked id only.
        shutil.rmtree(validate.instance_dir(self.instances_path, instance_uuid,
                                            "_resize" if kind == "resize" else ""),
                      ignore_errors=True)

    @abc.abstractmethod
    def remove_domain(self, instance_uuid):
        """Undefine an orphan domain; refuse (GuestRunningHere) one that runs as a guest."""

    @abc.abstractmethod
    def find_migration_job(self, instance):
        """The outgoing migration job of ``instance`` still running on this host
        (one a previous agent process started: the hypervisor's job outlives
        it), as a :class:`MigrationJob` the monitor can watch and steer; None if
        there is none."""

    @abc.abstractmethod
    def spawn(self, instance, network_info, block_device_info):
        """Create the instance's disks and domain, and start it.

        :raises: HypervisorError when the domain cannot be created.
        """

    @abc.abstractmethod
    def destroy(self, instance, network_info, block_device_info, destroy_disks=True):
        """Stop and undefine the domain; delete its files if ``destroy_disks``."""

    @abc.abstractmethod
    def get_power_state(self, instance):
        """The domain's power state (godwit.states.RUNNING, SHUTDOWN, ...)."""

    @abc.abstractmethod
    def power_off(self, instance):
        """Stop the guest (quiet if it is already off)."""

    @abc.abstractmethod
    def power_on(self, instance):
        """Start the guest (quiet if it is already running)."""

    @abc.abstractmethod
    def reboot(self, instance, network_info, block_device_info, reboot_type):
        """Restart the guest; it runs afterwards.

        ``reboot_type`` ``"SOFT"``: ask the guest to restart and fall back to a
        hard reboot if it has not done so in time (Nova's behaviour);
        ``"HARD"``: power-cycle it, re-plugging its VIFs and reconnecting its
        volumes (it also starts a stopped guest).

        :raises: HypervisorError when the guest cannot be started again.
        """

    # --- live migration -------------------------------------------------
    @abc.abstractmethod
    def check_can_live_migrate_destination(self, instance, block_migration):
        """Run on the destination before anything moves.

        Checks what only this host can tell (CPU, hypervisor) and leaves a
        probe for shared-storage detection.

        :returns: dest_check_data dict, passed to the source's check.
        :raises: MigrationPreCheckError naming the cause.
        """

    def migration_estimate(self, instance):
        """What a live migration of ``instance`` from this host would meet, for
        the dry run's prediction (conductor/prediction.py): a dict with
        ``bandwidth_mb_s`` (None when unlimited or unknown), ``dirty_rate_mb_s``
        (None when it cannot be measured) and ``basis`` (how they were found).
        None when the driver cannot tell at all."""
        return None

    def leave_shared_probe(self):
        """Write a probe file into this host's instances path; its name goes to the
        source, which is on shared storage exactly when it sees the file."""
        probe = PROBE_PREFIX + uuid.uuid4().hex
        with open(os.path.join(self.instances_path, probe), "w") as f:
            f.write(self.host)
        return probe

    def cleanup_live_migration_destination_check(self, dest_check_data):
        """Remove what check_can_live_migrate_destination left (the probe); drivers
        that leave more extend this."""
        probe = dest_check_data.get("probe")
        if probe:
            try:
                os.unlink(os.path.join(self.instances_path, probe))
            except FileNotFoundError:
                pass

    def decide_storage(self, instance, dest, dest_check_data):
        """Whether source and ``dest`` share the instance directory, and whether the
        move is a block migration; refuses combinations that cannot work.

        Shared means the probe file the destination wrote is visible here.
        ``block_migration`` "auto" (or None) picks block migration exactly when
        the storage is not shared.

        :returns: (is_shared_instance_path, block_migration)
        :raises: MigrationPreCheckError naming the cause.
        """
        probe = dest_check_data.get("probe") or ""
        shared = bool(probe) and os.path.exists(os.path.join(self.instances_path, probe))
        block = dest_check_data.get("block_migration")
        if block == "auto" or block is None:
            block = not shared
        if block and shared:
            raise exception.MigrationPreCheckError(
                reason=f"block migration was requested but {self.host} and {dest} share the "
                       "instance directory; migrate without block migration")
        if not block and not shared:
            raise exception.MigrationPreCheckError(
                reason=f"{self.host} and {dest} do not share the instance directory (the "
                       "destination's probe file is not visible here); use block migration")
        if block and instance.get("config_drive"):
            raise exception.MigrationPreCheckError(
                reason="the instance has a config drive, which cannot be block-migrated")
        return shared, block

    @abc.abstractmethod
    def check_can_live_migrate_source(self, instance, dest_check_data):
        """Run on the source: shared storage detection, source-only checks.

        :returns: migrate_data dict (is_shared_instance_path, block_migration,
            and whatever the destination's check returned).
        :raises: MigrationPreCheckError naming the cause.
        """

    @abc.abstractmethod
    def pre_live_migration(self, instance, block_device_info, network_info, migrate_data):
        """Prepare the destination: instance directory and disks.

        :returns: migrate_data, possibly extended for the source.
        """

    @abc.abstractmethod
    def live_migration(self, instance, dest, migrate_data, params):
        """Start moving the running guest to ``dest``; return the running job.

        ``params`` holds the starting tuning: ``bandwidth_mib`` (0 = no cap),
        ``max_downtime_ms``, ``auto_converge`` and ``post_copy`` (permitted).
        The compute agent's :mod:`compute.migration_monitor` then watches and
        steers the job until it ends.

        :returns: a :class:`MigrationJob` already under way.
        :raises: HypervisorError if the job could not start.
        """

    @abc.abstractmethod
    def post_live_migration_at_source(self, instance, block_device_info, migrate_data):
        """Source, after the switch: hypervisor-side cleanup of the old domain."""

    @abc.abstractmethod
    def post_live_migration_at_destination(self, instance, network_info, block_device_info,
                                           migrate_data):
        """Destination, after the switch: make the domain persistent."""

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance, network_info,
                                               block_device_info, destroy_disks,
                                               migrate_data):
        """Destination, after a failure: remove the domain and files it got."""

    @abc.abstractmethod
    def cleanup_source_files(self, instance, migrate_data):
        """Source, after success: delete the instance directory unless shared."""


class ColdMigrationDriver(abc.ABC):
    """What a hypervisor driver adds to move a stopped guest (cold migration, resize).

    Follows Nova's split: the source powers the guest off and copies its disks
    out of ``<instances_path>/<uuid>_resize`` (the original files, kept until
    confirm so a revert can use them); the destination builds the guest from
    the copies; confirm deletes the source's copy; revert restores it. Every
    method is idempotent. ``transfer`` is a :class:`compute.transfer.base.
    TransferDriver` for the copy.
    """

    @abc.abstractmethod
    def check_can_receive(self, instance, new_flavor):
        """Destination, in prep_resize: can this host take the guest at ``new_flavor``?

        :raises: HostCapacityExceeded (or another GodwitException) naming what
            is missing; the conductor then tries the next host.
        """

    @abc.abstractmethod
    def migrate_disk_and_power_off(self, instance, migration, dest_info, new_flavor,
                                   transfer):
        """Source: power off, set the original files aside, copy every non-swap
        disk (backing chain merged) to the destination.

        :param dest_info: the destination's host name, address and
            instances_path.
        :returns: disk_info, a list of dicts (name, virtual_size, format).
        :raises: HypervisorError, TransferFailed.
        """

    @abc.abstractmethod
    def finish_migration(self, instance, migration, disk_info, network_info,
                         block_device_info, new_flavor, power_on):
        """Destination: grow disks to ``new_flavor``, define the domain, start it
        if ``power_on``.

        :raises: DiskShrinkRefused if a disk would have to shrink.
        """

    @abc.abstractmethod
    def confirm_migration(self, instance, migration):
        """Source: delete the set-aside files and the old domain definition."""

    @abc.abstractmethod
    def finish_revert_migration(self, instance, migration, network_info, block_device_info,
                                power_on):
        """Source: put the set-aside files back, define the domain, start it if
        ``power_on``."""

    @abc.abstractmethod
    def cleanup_failed_migration(self, instance, migration, dest_info, transfer):
        """Source: after a failed copy, remove partial files on the destination
        and put the originals back (the guest stays powered off)."""
