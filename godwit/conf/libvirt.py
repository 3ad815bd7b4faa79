"""[libvirt] options: the libvirt hypervisor driver and its live migrations."""

from oslo_config import cfg

GROUP = "libvirt"

LIBVIRT_OPTS = [
    cfg.StrOpt("connection_uri", default="qemu:///system",
               help="libvirt connection URI of this host's hypervisor."),
    cfg.StrOpt("image_store_path", default="$state_path/images",
               help="Directory of the boot images the libvirt driver knows: an instance "
                    "whose image_ref is X boots the kernel, ramdisk and command line "
                    "that X.json there names (direct kernel boot; see "
                    "docs/libvirt.md). An instance without image_ref gets a blank root "
                    "disk."),
    cfg.StrOpt("live_migration_scheme", default="tcp",
               help="Scheme of the URI the source's libvirt uses to reach the "
                    "destination's (qemu+<scheme>://<host>/system)."),
    cfg.StrOpt("live_migration_inbound_addr",
               help="Address other hosts use for live migration traffic to this host."),
    cfg.IntOpt("live_migration_bandwidth", default=0, min=0,
               help="Maximum bandwidth of a live migration in MiB/s; 0 means unlimited."),
    cfg.IntOpt("live_migration_downtime", default=500, min=100,
               help="Maximum pause of the guest at the switch-over, in ms, reached in "
                    "steps (see the two options below)."),
    cfg.IntOpt("live_migration_downtime_steps", default=10, min=3,
               help="Number of steps to raise the allowed downtime to its maximum."),
    cfg.IntOpt("live_migration_downtime_delay", default=75, min=3,
               help="Seconds per GiB of guest data (RAM plus copied disk, each counted "
                    "as at least 2 GiB) between downtime steps."),
    cfg.IntOpt("live_migration_completion_timeout", default=800, min=0,
               help="Seconds per GiB of guest data a live migration may run before "
                    "live_migration_timeout_action is taken; 0 disables."),
    cfg.StrOpt("live_migration_timeout_action", default="abort",
               choices=["abort", "force_complete"],
               help="On completion timeout: abort the migration, or force it to complete "
                    "(post-copy where permitted, otherwise pause the guest)."),
    cfg.BoolOpt("live_migration_permit_post_copy", default=False,
                help="Allow switching a migration that does not converge to post-copy."),
    cfg.BoolOpt("live_migration_permit_auto_converge", default=False,
                help="Allow throttling the guest's vCPUs so a migration converges."),
    cfg.IntOpt("live_migration_stall_timeout", default=300, min=0,
               help="Seconds without progress (the data remaining not dropping 1 % below "
                    "its lowest) after which live_migration_stall_action is taken; 0 "
                    "disables."),
    cfg.StrOpt("live_migration_stall_action", default="raise_downtime",
               choices=["raise_downtime", "post_copy", "pause", "abort", "none"],
               help="On a stall: raise the max downtime to live_migration_downtime at "
                    "once (unless the user set it), switch to post-copy (pause when "
                    "live_migration_permit_post_copy is off), pause the guest, abort, or "
                    "only record it in the timeline."),
    cfg.IntOpt("live_migration_parallel_connections", default=0, min=0, max=255,
               help="Parallel migration connections (multifd, VIR_MIGRATE_PARALLEL); "
                    "0 uses one. The timeline says what a migration used."),
    cfg.FloatOpt("live_migration_monitor_interval", default=0.5, min=0.01,
                 help="Seconds between two looks at a running migration job (progress, "
                      "downtime steps, timeouts, abort)."),
    cfg.StrOpt("virt_type", default="qemu", choices=["qemu", "kvm"],
               help="Domain type of the guests the libvirt driver creates: qemu (TCG, "
                    "software emulation, works everywhere) or kvm (hardware "
                    "acceleration, needs a usable /dev/kvm)."),
    cfg.BoolOpt("live_migration_tunnelled", default=False,
                help="Send migration data through the libvirtd connection "
                     "(VIR_MIGRATE_TUNNELLED) instead of a direct QEMU-to-QEMU stream. "
                     "libvirt cannot combine it with block migration."),
    cfg.BoolOpt("live_migration_with_native_tls", default=False,
                help="Encrypt the QEMU-to-QEMU migration stream with QEMU's native TLS "
                     "(VIR_MIGRATE_TLS); both hosts need the migration certificates "
                     "libvirt's qemu.conf names."),
    cfg.StrOpt("migration_peer_uri",
               help="libvirt URI the source hosts' libvirtd uses to reach this host's "
                    "libvirtd for a migration (advertised to the source in the "
                    "pre-check). Default: qemu+<live_migration_scheme>://<this host's "
                    "live_migration_inbound_addr, or its IP>/system. Set it when "
                    "libvirtd listens on a non-default port."),
]


def register_opts(conf):
    conf.register_opts(LIBVIRT_OPTS, group=GROUP)


def list_opts():
    return {GROUP: LIBVIRT_OPTS}
