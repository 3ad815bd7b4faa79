"""[fake] options: the fake hypervisor hosts (tests, godwit-all, the demo)."""

from oslo_config import cfg

GROUP = "fake"

FAKE_OPTS = [
    cfg.StrOpt("hosts_path", default="$state_path/fake-hosts",
               help="Each fake host keeps what exists on it (domains, disks, VIFs, volume "
                    "connections, filter rules) under <hosts_path>/<host>/."),
    cfg.IntOpt("memory_mb", default=32768, min=1, help="RAM a fake host reports."),
    cfg.IntOpt("vcpus", default=16, min=1, help="vCPUs a fake host reports."),
    cfg.IntOpt("disk_gb", default=500, min=1, help="Local disk a fake host reports."),
    cfg.StrOpt("hypervisor_type", default="fake", help="Hypervisor type a fake host reports."),
    cfg.IntOpt("hypervisor_version", default=1000000,
               help="Hypervisor version a fake host reports (libvirt's integer form)."),
    cfg.StrOpt("cpu_model", default="Haswell-noTSX", help="CPU model a fake host reports."),
    cfg.StrOpt("security_driver", default="none",
               help="Security driver (none, apparmor, selinux) a fake host reports."),
    cfg.ListOpt("faults", default=[],
                help="Faults to inject, each '<step>:<action>[:<seconds>]' with action "
                     "fail, hang or delay, e.g. 'pre_live_migration:fail'. A test can also "
                     "write <hosts_path>/<host>/faults.json while the host runs."),
    cfg.StrOpt("disk_format", default="file", choices=["file", "qcow2"],
               help="Disks of fake instances: 'file', a small placeholder file (needs "
                    "nothing installed), or 'qcow2', a real qcow2 image made with "
                    "qemu-img, on the image <instances_path>/_base/<image_ref> as its "
                    "backing file when that exists."),
    cfg.BoolOpt("accepts_migrations", default=True,
                help="Whether this fake host's hypervisor accepts incoming migrations; "
                     "False simulates libvirtd not listening (connection refused)."),
    cfg.IntOpt("migration_bandwidth_mb", default=0, min=0,
               help="Simulated live migration bandwidth in MiB/s; 0 moves memory at once."),
    cfg.IntOpt("migration_dirty_rate_mb", default=0, min=0,
               help="MiB/s of guest memory re-dirtied while a simulated migration runs."),
    cfg.StrOpt("migration_job_runner", default="process", choices=["process", "thread"],
               help="Where a simulated migration that takes time runs: 'process', a "
                    "process of its own that outlives the agent (as a libvirt job outlives "
                    "a dead agent) and that a restarted agent finds again; 'thread', "
                    "inside the agent (godwit-all and in-process tests)."),
]


def register_opts(conf):
    conf.register_opts(FAKE_OPTS, group=GROUP)


def list_opts():
    return {GROUP: FAKE_OPTS}
