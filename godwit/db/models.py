"""SQLAlchemy models: the whole schema Godwit keeps.

Only the control plane (API and conductor) opens the database; compute agents
read and write through conductor RPCs. Schema changes go through alembic
(``godwit/db/alembic``); a test checks that these models and the migrations
agree.
"""

import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from godwit.timeutils import utcnow

# Microsecond timestamps everywhere: MySQL/MariaDB's DATETIME keeps whole
# seconds unless told otherwise, which would reorder events and migrations.
DateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")




class Base(DeclarativeBase):
    def to_dict(self):
        return {c.key: getattr(self, c.key) for c in self.__mapper__.column_attrs}


class TimestampMixin:
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class Service(Base, TimestampMixin):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", name="uniq_services0host0binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[str | None] = mapped_column(String(32))
    # The RPC version of its topic the service serves (compute agents: compute
    # RPC, conductors: conductor RPC), for [upgrade_levels] ... = auto. None:
    # registered by a release that did not record it (counted as the oldest).
    rpc_version: Mapped[str | None] = mapped_column(String(16))
    # Conductors only: when this one last sent itself a message through the
    # broker, and since when that has kept working (None: the last try
    # failed). An agent's missing heartbeats count against it only while the
    # broker works (see godwit.db.services.is_service_up).
    broker_checked_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    broker_ok_since: Mapped[datetime.datetime | None] = mapped_column(DateTime)


class ComputeNode(Base, TimestampMixin):
    __tablename__ = "compute_nodes"
    __table_args__ = (UniqueConstraint("host", "hypervisor_hostname",
                                       name="uniq_compute_nodes0host0hypervisor_hostname"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    host_ip: Mapped[str | None] = mapped_column(String(64))
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    local_gb: Mapped[int] = mapped_column(Integer, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str] = mapped_column(String(255))
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=0)
    cpu_info: Mapped[str] = mapped_column(Text, default="{}")
    security_driver: Mapped[str | None] = mapped_column(String(64))
    instances_path: Mapped[str | None] = mapped_column(String(1024))
    # The host's max_concurrent_live_migrations, as its agent reports it: the
    # conductor hands out the source's slots (None: no limit).
    max_live_migrations: Mapped[int | None] = mapped_column(Integer)
    # Bumped by every claim on the host's room, by compare-and-swap
    # (godwit/db/claims.py): of two claims that read the same room, one commits.
    generation: Mapped[int] = mapped_column(Integer, default=0)


class Flavor(Base, TimestampMixin):
    __tablename__ = "flavors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flavorid: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    memory_mb: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)


class Instance(Base, TimestampMixin):
    __tablename__ = "instances"
    __table_args__ = (Index("instances_host_idx", "host"),
                      Index("instances_project_idx", "project_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    instance_type_id: Mapped[int] = mapped_column(Integer, ForeignKey("flavors.id"))
    memory_mb: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    image_ref: Mapped[str | None] = mapped_column(String(255))
    config_drive: Mapped[bool] = mapped_column(Boolean, default=False)
    vm_state: Mapped[str] = mapped_column(String(255))
    task_state: Mapped[str | None] = mapped_column(String(255))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    terminated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    fault_message: Mapped[str | None] = mapped_column(Text)


class Migration(Base, TimestampMixin):
    __tablename__ = "migrations"
    __table_args__ = (Index("migrations_instance_uuid_idx", "instance_uuid"),
                      Index("migrations_status_idx", "status"),
                      Index("migrations_updated_at_idx", "updated_at", "id"),
                      Index("migrations_owner_idx", "owner"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    migration_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    source_compute: Mapped[str | None] = mapped_column(String(255))
    dest_compute: Mapped[str | None] = mapped_column(String(255))
    source_node: Mapped[str | None] = mapped_column(String(255))
    dest_node: Mapped[str | None] = mapped_column(String(255))
    dest_host: Mapped[str | None] = mapped_column(String(255))
    old_instance_type_id: Mapped[int | None] = mapped_column(Integer)
    new_instance_type_id: Mapped[int | None] = mapped_column(Integer)
    block_migration: Mapped[bool | None] = mapped_column(Boolean)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    memory_total: Mapped[int | None] = mapped_column(Integer)
    memory_processed: Mapped[int | None] = mapped_column(Integer)
    memory_remaining: Mapped[int | None] = mapped_column(Integer)
    disk_total: Mapped[int | None] = mapped_column(Integer)
    disk_processed: Mapped[int | None] = mapped_column(Integer)
    disk_remaining: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    deadline_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    # Cold migration/resize: the hosts still to try if prep_resize fails on the
    # chosen one (JSON list), and the vm_state to return to on confirm/revert.
    alternates: Mapped[str | None] = mapped_column(Text)
    old_vm_state: Mapped[str | None] = mapped_column(String(255))
    # Crash safety (docs/crash-safety.md). The conductor that drives the move,
    # until when its lease runs (the database's clock), and the fencing epoch
    # every write and host step carries; a takeover raises the epoch.
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    # What one step hands the next (JSON): migrate_data, disk_info, the
    # hypervisor job's outcome, why a rollback started.
    step_data: Mapped[str | None] = mapped_column(Text)
    # The user's intents, recorded by the API and carried out by the owner.
    abort_requested_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    force_complete_requested_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    # Hosts that could not be asked by the phase's deadline (JSON list): set
    # only on an 'error' that recovery reopens when they return.
    awaiting_hosts: Mapped[str | None] = mapped_column(Text)
    # Hosts with clean-up left for when they return (JSON list): a final move
    # whose source or destination was down when its turn came.
    cleanup_hosts: Mapped[str | None] = mapped_column(Text)


class BlockDeviceMapping(Base, TimestampMixin):
    __tablename__ = "block_device_mappings"
    __table_args__ = (Index("bdm_instance_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    source_type: Mapped[str] = mapped_column(String(32))
    destination_type: Mapped[str] = mapped_column(String(32))
    device_type: Mapped[str | None] = mapped_column(String(32))
    device_name: Mapped[str | None] = mapped_column(String(255))
    boot_index: Mapped[int | None] = mapped_column(Integer)
    volume_id: Mapped[str | None] = mapped_column(String(36))
    volume_size: Mapped[int | None] = mapped_column(Integer)
    connection_info: Mapped[str | None] = mapped_column(Text)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False)


class VirtualInterface(Base, TimestampMixin):
    __tablename__ = "virtual_interfaces"
    __table_args__ = (Index("vif_instance_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    address: Mapped[str] = mapped_column(String(32))
    network_id: Mapped[str | None] = mapped_column(String(255))
    vif_type: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="{}")


class InstanceAction(Base):
    __tablename__ = "instance_actions"
    __table_args__ = (Index("instance_actions_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(255))
    instance_uuid: Mapped[str] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    message: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class InstanceActionEvent(Base):
    __tablename__ = "instance_action_events"
    __table_args__ = (Index("instance_action_events_action_idx", "action_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(Integer, ForeignKey("instance_actions.id"))
    event: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    result: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)


class MoveResource(Base, TimestampMixin):
    """The ledger: what a move made on a host (godwit/db/ledger.py).

    One row per (migration, host, kind): written 'planned' before the step
    that makes it, 'present' once the step returned, 'released' once undone
    or handed on (a claim becomes the guest's own at the end of a move).
    """
    __tablename__ = "move_resources"
    __table_args__ = (UniqueConstraint("migration_id", "host", "kind",
                                       name="uniq_move_resources0migration0host0kind"),
                      Index("move_resources_host_idx", "host", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(Integer)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    host: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))


class TimelineEntry(Base):
    """A move's timeline (godwit/db/timeline.py): append-only, one row per thing
    that happened to it, in the order it was recorded."""
    __tablename__ = "migration_timeline"
    __table_args__ = (Index("migration_timeline_migration_idx", "migration_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime.datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class HostDrain(Base, TimestampMixin):
    """A host drain (godwit/db/drains.py, conductor/drain.py): the whole state of
    one, so that any conductor can carry it on. One running drain per host."""
    __tablename__ = "host_drains"
    __table_args__ = (Index("host_drains_host_idx", "host", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    # running, cancelling, finished, cancelled
    status: Mapped[str] = mapped_column(String(16))
    # What a guest whose live migration cannot be done gets: skip, cold, leave.
    fallback: Mapped[str] = mapped_column(String(16))
    # What a cancel does to the live migrations under way: abort, finish.
    on_cancel: Mapped[str] = mapped_column(String(16))
    guest_timeout: Mapped[int] = mapped_column(Integer)
    # Who asked (a request context as a dict, JSON): the drain's moves are
    # asked for in their name, through the same checks and policy as REST's.
    context: Mapped[str | None] = mapped_column(Text)
    # The conductor that drives it, until when (the database's clock), and the
    # fencing epoch that a takeover raises, as for migrations.
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    # Per guest: its state, moves, destination and why (JSON list, in the
    # drain's order).
    report: Mapped[str] = mapped_column(Text, default="[]")
