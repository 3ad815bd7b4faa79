"""Configuration options, registered on an explicit ``ConfigOpts``.

Every service builds its configuration with :func:`parse_args`; code receives
the resulting object as an argument instead of reaching for a global, so one
process (``godwit-all``, the functional tests) can run several services with
different settings.
"""

import importlib
import os
import socket

import oslo_messaging
from oslo_config import cfg
from oslo_log import log as logging
from oslo_messaging import transport as oslo_messaging_transport
from oslo_messaging.notify import notifier as oslo_messaging_notifier
from oslo_messaging.rpc import client as oslo_messaging_client

DEFAULT_OPTS = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host. Compute agents use it as their RPC server name "
                    "and as the name of their service and compute node."),
    cfg.StrOpt("state_path", default="/var/lib/godwit",
               help="Top-level directory for Godwit's state: the SQLite database of the "
                    "embedded default, instance directories, and the fake hosts' state."),
    cfg.StrOpt("instances_path", default="$state_path/instances",
               help="Where instance directories live. When two compute hosts see the same "
                    "directory here (shared storage) live migration needs no disk copy. "
                    "'{host}' in it is replaced by the agent's host name (several agents on "
                    "one machine, each with its own directory)."),
    cfg.IntOpt("shutdown_timeout", default=60, min=0,
               help="Seconds a guest gets to shut down after the ACPI power button before "
                    "it is destroyed (Nova's option): cold migration and resize power the "
                    "guest off this way, and a soft reboot starts this way. 0 destroys at "
                    "once."),
    cfg.IntOpt("report_interval", default=10, min=1,
               help="Seconds between service heartbeats."),
    cfg.IntOpt("service_down_time", default=60, min=1,
               help="A service whose last heartbeat is older than this many seconds is "
                    "considered down. Keep it well above report_interval."),
    cfg.IntOpt("max_concurrent_live_migrations", default=1, min=0,
               help="Outgoing live migrations a compute host runs at once; further ones "
                    "wait in status 'queued'. 0 means unlimited."),
    cfg.IntOpt("migrate_max_retries", default=-1, min=-1,
               help="How many other destinations the scheduler tries after the first one "
                    "refuses a live migration. -1 tries until no host is left."),
    cfg.IntOpt("long_rpc_timeout", default=1800, min=1,
               help="Timeout in seconds for RPC calls that do long work on a host, such "
                    "as pre_live_migration."),
    cfg.FloatOpt("cpu_allocation_ratio", default=4.0, min=0.0,
                 help="vCPUs the scheduler may place per physical CPU of a host."),
    cfg.FloatOpt("ram_allocation_ratio", default=1.0, min=0.0,
                 help="Virtual RAM the scheduler may place per MiB of host RAM."),
    cfg.FloatOpt("disk_allocation_ratio", default=1.0, min=0.0,
                 help="Virtual disk the scheduler may place per GiB of host disk."),
    cfg.BoolOpt("allow_resize_to_same_host", default=False,
                help="Let cold migration and resize choose the host the server is on "
                     "(useful on single-host clouds)."),
    cfg.IntOpt("resize_confirm_window", default=0, min=0,
               help="Confirm resizes and cold migrations left in VERIFY_RESIZE this many "
                    "seconds; 0 leaves them to the user."),
    cfg.IntOpt("cold_migration_accepted_timeout", default=600, min=1,
               help="Deadline (seconds) of a cold migration's or resize's 'accepted' and "
                    "'pre-migrating' phases (prep_resize on the destination). Past it, "
                    "with the destination unreachable, the move ends 'failed' and the "
                    "guest stays untouched on its source."),
    cfg.IntOpt("cold_migration_step_timeout", default=21600, min=1,
               help="Deadline (seconds) of every other in-progress phase of a cold "
                    "migration or resize (copying disks included). Past it the conductor "
                    "asks both hosts where the guest is and rolls the move forward or "
                    "back; only if a host cannot be asked does it end in 'error', to be "
                    "resumed when that host returns."),
    cfg.IntOpt("migration_watchdog_interval", default=5, min=1,
               help="Seconds between two sweeps of each conductor over the moves: renew "
                    "its leases, take over moves whose owner stopped, carry out intents "
                    "whose wake-up message was lost, and act on overrun deadlines."),
    cfg.IntOpt("migration_lease_time", default=30, min=3,
               help="Seconds a conductor's hold on a move lasts without renewal (renewed "
                    "every third of it). Once it runs out, any conductor takes the move "
                    "over and resumes it from what the hosts say."),
    cfg.IntOpt("host_step_timeout", default=10, min=1,
               help="Seconds the conductor waits for one answer from a host step before it "
                    "asks again. Steps are idempotent: asking again joins the step if it "
                    "still runs, returns its outcome if it ended, and re-runs it on an "
                    "agent that restarted. The phase's deadline bounds the whole: keep "
                    "every phase's deadline at least twice this, so a step is asked again "
                    "at least once before it is given up."),
    cfg.IntOpt("conductor_workers", default=32, min=1,
               help="Threads a conductor uses to drive moves (each waits on host steps)."),
    cfg.ListOpt("conductor_faults", default=[],
                help="For tests of crash safety only: faults the conductor injects into "
                     "itself, each '<point>:<action>[:<seconds>][:once]' as in [fake] "
                     "faults, where point is 'advance.<event>' (just after the write that "
                     "takes a phase's event, before anything follows it) or "
                     "'call.<host step>' (just before asking a host for the step). Also "
                     "read from <state_path>/conductor-faults/<host>/faults.json."),
    cfg.IntOpt("reconcile_interval", default=3600, min=0,
                help="Seconds between two looks of the reconciler over every host that is "
                     "up, for what nothing should hold any more (domains, instance "
                     "directories, VIFs, volume connections, filter rules of deleted or "
                     "moved guests); 0: never. Run by one conductor. An agent that starts "
                     "is always reconciled first, and removes its orphans before it takes "
                     "work."),
    cfg.BoolOpt("reconcile_fix", default=False,
                help="Whether the periodic reconciler removes the orphans it finds (else it "
                     "only reports them in its log; 'godwit-manage reconcile --fix' removes "
                     "them on demand). A running domain is never removed."),
    cfg.IntOpt("host_drain_interval", default=2, min=1,
               help="Seconds between two looks of each conductor at the host drains it "
                    "drives (and at drains whose conductor stopped): start the next "
                    "guests' moves, act on moves that ended or ran past the drain's "
                    "per-guest timeout, carry out a cancel (docs/host-drain.md)."),
    cfg.IntOpt("host_drain_max_concurrent", default=4, min=1,
               help="Guests a host drain moves at once when the drained host's "
                    "max_concurrent_live_migrations is 0 (unlimited); otherwise the "
                    "drain moves at most that many."),
    cfg.IntOpt("host_drain_guest_timeout", default=1800, min=1,
               help="Default per-guest timeout (seconds) of a host drain: a guest's live "
                    "migration still under way this long after the drain asked for it is "
                    "aborted and the guest gets the drain's fallback. A drain request may "
                    "set its own (guest_timeout)."),
    cfg.IntOpt("graceful_shutdown_timeout", default=60, min=0,
               help="On SIGTERM a service stops taking new work and lets running steps "
                    "finish for up to this many seconds; a conductor then hands its moves "
                    "over (releases their leases), an agent leaves hypervisor jobs "
                    "running for its successor to find. Then it exits."),
    cfg.IntOpt("live_migration_accepted_timeout", default=300, min=1,
               help="Deadline (seconds) of a live migration's 'accepted' phase (checks). "
                    "A migration found there by recovery whose checks never finished ends "
                    "'failed': nothing was prepared."),
    cfg.IntOpt("live_migration_queued_timeout", default=7200, min=1,
               help="Seconds a live migration may wait in 'queued' for a slot on its "
                    "source before it is cancelled."),
    cfg.IntOpt("live_migration_preparing_timeout", default=1900, min=1,
               help="Deadline (seconds) of 'preparing' (pre_live_migration on the "
                    "destination) and of 'rolling-back'. Past it an unreachable "
                    "destination is given up: the guest stays on its source and the "
                    "destination is cleaned when it returns."),
    cfg.IntOpt("live_migration_progress_timeout", default=150, min=1,
               help="Seconds a 'running' live migration may go without recording "
                    "progress. Then the conductor asks both hosts: a job still running is "
                    "waited for, a finished one rolled forward or back; 'error' only if "
                    "neither host can tell where the guest is."),
    cfg.IntOpt("live_migration_post_timeout", default=1900, min=1,
               help="Deadline (seconds) of 'post-migrating': the conductor retries the "
                    "hosts' finishing steps until then. A source that is down is cleaned "
                    "when it returns; a destination that stays unreachable ends the "
                    "migration in 'error', resumed when it returns."),
]

DATABASE_OPTS = [
    cfg.StrOpt("connection", default="sqlite:///$state_path/godwit.sqlite", secret=True,
               help="SQLAlchemy URL of the database. The default is a SQLite file under "
                    "state_path; use postgresql+psycopg2://... or mysql+pymysql://... for "
                    "real deployments."),
    cfg.BoolOpt("echo", default=False, help="Log every SQL statement (debugging)."),
]

API_OPTS = [
    cfg.HostAddressOpt("listen", default="127.0.0.1", help="Address the API listens on."),
    cfg.PortOpt("port", default=8774, help="Port the API listens on (Nova's by default)."),
    cfg.IntOpt("threads", default=8, min=1, help="WSGI server worker threads."),
    cfg.StrOpt("auth_strategy", default="noauth2", choices=["noauth2", "keystone"],
               help="noauth2 trusts the X-Auth-Token '<user>:<project>' and treats a "
                    "request without a token as admin (development only); keystone "
                    "validates tokens with keystonemiddleware (its options are in "
                    "[keystone_authtoken])."),
    cfg.BoolOpt("allow_noauth_on_network", default=False,
                help="Let godwit-api start with auth_strategy = noauth2 on an address that "
                     "is not loopback. noauth2 makes anyone who reaches the port an "
                     "admin, so by default godwit-api refuses to start that way; set "
                     "this only on an isolated network (a test lab) where that is "
                     "wanted."),
    cfg.IntOpt("max_request_body_size", default=114688, min=1024,
               help="Largest request body, in bytes, the API reads (Nova's default, "
                    "112 KiB); a larger one is refused with 413 before it is parsed."),
    cfg.ListOpt("faults", default=[],
                help="For tests of crash safety only: faults the API injects into itself, "
                     "'intent.<abort|force_complete|confirm|revert|stop|start|reboot>:"
                     "<action>[:<seconds>][:once]', just after the intent is written and "
                     "before the conductor is woken. Also read from "
                     "<state_path>/api-faults/faults.json."),
]

COMPUTE_OPTS = [
    cfg.StrOpt("virt_driver", default="fake",
               help="Hypervisor driver, an entry point in 'godwit.virt_drivers'."),
    cfg.StrOpt("vif_driver", default="fake",
               help="Virtual interface driver, an entry point in 'godwit.vif_drivers'."),
    cfg.StrOpt("volume_driver", default="fake",
               help="Volume connector driver, an entry point in 'godwit.volume_drivers'."),
    cfg.StrOpt("firewall_driver", default="fake",
               help="Firewall filter driver, an entry point in 'godwit.firewall_drivers'."),
]

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

ALL_OPTS = [
    cfg.IntOpt("compute_hosts", default=3, min=1,
               help="How many fake compute hosts godwit-all starts (compute1..N)."),
]


# Options of the real host drivers (compute/vif, compute/firewall, compute/volume):
# one group per driver, listed once here for register_opts and opts.list_opts.
VIF_OVS_OPTS = [
    cfg.StrOpt("bridge", default="br-int",
               help="Open vSwitch integration bridge the 'ovs' VIF driver plugs ports into "
                    "(created with datapath_type if missing). A VIF's details may name "
                    "another bridge with the key 'bridge'."),
    cfg.StrOpt("datapath_type", default="netdev", choices=["netdev", "system"],
               help="Datapath of the bridges the 'ovs' VIF driver creates: 'system' needs "
                    "the openvswitch kernel module, 'netdev' is the userspace datapath "
                    "that works without it."),
]

# Godwit's own copy of the os-vif ovs plugin options it uses (os-vif reads them
# from its [os_vif_ovs] group); kept here so the sample does not depend on
# whether os-vif is installed. The plugin's other options keep os-vif's defaults.
OS_VIF_OVS_OPTS = [
    cfg.StrOpt("ovsdb_connection", default="tcp:127.0.0.1:6640",
               help="OVSDB endpoint of this host's Open vSwitch, e.g. "
                    "unix:/run/openvswitch/db.sock."),
    cfg.IntOpt("ovs_vsctl_timeout", default=120, min=0,
               help="Seconds to wait for an answer from OVSDB; 0 waits forever."),
    cfg.IntOpt("network_device_mtu", default=1500, min=68,
               help="MTU of the ports and taps the 'ovs' VIF driver creates when the VIF's "
                    "details give none ('mtu')."),
    cfg.BoolOpt("isolate_vif", default=False,
                help="Plug new ports into the dead VLAN 4095 until the Neutron OVS agent "
                     "binds them (only for the ML2/OVS agent)."),
]

VIF_BRIDGE_OPTS = [
    cfg.ListOpt("bridge_mappings", default=[],
                help="'<network_id>:<bridge>' pairs: the Linux bridge each network's VIFs "
                     "join. Networks not listed get 'br-<first 11 characters of the "
                     "network id>'. Bridges the driver creates itself are removed again "
                     "when their last port goes; bridges it found are never removed."),
    cfg.StrOpt("netns", default="",
               help="Network namespace the 'linux_bridge' VIF driver works in; empty is "
                    "the agent's own (tests put a fake host in a namespace)."),
]

FIREWALL_OPTS = [
    cfg.StrOpt("table", default="godwit",
               help="nftables table (family inet) that holds the instances' ingress "
                    "chains; the 'nftables' firewall driver owns it."),
    cfg.ListOpt("default_ingress", default=[],
                help="Ingress allowed to every instance besides replies to its own "
                     "traffic, IPv6 neighbour discovery and DHCP replies: rules like "
                     "'icmp', 'icmpv6', 'tcp:22', 'udp:5000-5010', each optionally limited "
                     "to a source with '@<cidr>' ('tcp:22@198.51.100.0/24'). Everything "
                     "else to the instance is dropped."),
    cfg.StrOpt("netns", default="",
               help="Network namespace the 'nftables' firewall driver works in (runs "
                    "'ip netns exec <netns> nft'); empty is the agent's own."),
]

ISCSI_QEMU_OPTS = [
    cfg.FloatOpt("connect_timeout", default=5.0, min=0.1,
                 help="Seconds to wait for a TCP connection to an iSCSI portal before "
                      "connect_volume fails."),
    cfg.StrOpt("target_portal", default="",
               help="Portal (host:port) of the iSCSI target that serves volumes whose "
                    "BDM carries no connection_info (a deployment without a volume "
                    "service that records it). Empty: such a BDM cannot connect."),
    cfg.StrOpt("target_iqn_format", default="iqn.2010-10.org.openstack:volume-%(volume_id)s",
               help="IQN of such a volume's target, from its volume_id (Cinder's "
                    "default naming for its tgt and LIO targets)."),
    cfg.IntOpt("target_lun", default=1, min=0,
               help="LUN of such a volume within its target (tgtd numbers data LUNs "
                    "from 1)."),
    cfg.BoolOpt("probe_lun", default=True,
                help="Also log in and read the LUN's inquiry data with libiscsi's "
                     "iscsi-inq when that tool is installed (package libiscsi-bin)."),
]

LOCAL_BLOCK_OPTS = [
    cfg.StrOpt("volumes_path", default="$state_path/volumes",
               help="Directory of the 'local_block' driver's backing files, one per volume "
                    "named volume-<volume_id>, unless a BDM's connection_info names its "
                    "file ('data': {'backing_file': ...})."),
]

OS_BRICK_OPTS = [
    cfg.BoolOpt("use_multipath", default=False,
                help="Let os-brick connect through multipathd."),
    cfg.IntOpt("device_scan_attempts", default=3, min=1,
               help="How often os-brick rescans for the device after the iSCSI login."),
    cfg.StrOpt("lock_path", default="$state_path/locks",
               help="Directory of os-brick's inter-process locks."),
]

HOST_DRIVER_OPTS = [
    ("vif_ovs", VIF_OVS_OPTS),
    ("os_vif_ovs", OS_VIF_OVS_OPTS),
    ("vif_bridge", VIF_BRIDGE_OPTS),
    ("firewall", FIREWALL_OPTS),
    ("iscsi_qemu", ISCSI_QEMU_OPTS),
    ("local_block", LOCAL_BLOCK_OPTS),
    ("os_brick", OS_BRICK_OPTS),
]


# Copying disks between compute hosts for cold migration and resize
# (compute/transfer/, docs/cold-migration-transfer.md).
TRANSFER_OPTS = [
    cfg.StrOpt("driver", default="local",
               help="How disks are copied to the destination host in a cold migration or "
                    "resize, an entry point in 'godwit.transfer_drivers': 'local' (the "
                    "instance path is shared storage, or both hosts are this machine), "
                    "'rsync' (over SSH, keeps sparse images sparse; rsync on both hosts) "
                    "or 'scp' (over SSH; needs only sshd on the destination, but writes "
                    "holes as zeros)."),
    cfg.StrOpt("ssh_user", default="",
               help="User to log in as on the other compute hosts; empty means the user "
                    "this service runs as."),
    cfg.PortOpt("ssh_port", default=22, help="Port of sshd on the other compute hosts."),
    cfg.StrOpt("ssh_key_file", default="",
               help="Private key (absolute path, no passphrase) to log in with; empty "
                    "uses ssh's default keys of the service user (~/.ssh/id_*)."),
    cfg.StrOpt("ssh_known_hosts_file", default="",
               help="known_hosts file for the other compute hosts. When set, ssh runs "
                    "with StrictHostKeyChecking=accept-new: the first connection to a "
                    "host records its key in this file, later connections must present "
                    "the same key (a changed key fails the transfer). Empty uses "
                    "~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, where every "
                    "host's key must already be (ssh-keyscan): ssh runs in batch mode "
                    "and never asks."),
    cfg.IntOpt("ssh_connect_timeout", default=10, min=1,
               help="Seconds ssh waits for the TCP connection to the other host."),
    cfg.ListOpt("rsync_options", default=["--sparse", "--whole-file"],
                help="Options the 'rsync' driver adds to 'rsync -a'. --sparse keeps "
                     "unallocated ranges of qcow2 and raw images unallocated on the "
                     "destination; --whole-file skips the delta algorithm, which only "
                     "costs CPU when the destination has no older copy (the normal "
                     "case). --inplace is left out on purpose: without it rsync writes "
                     "to a temporary file and renames it when complete. Add "
                     "--compress on slow links."),
    cfg.IntOpt("bandwidth_limit_kbps", default=0, min=0,
               help="Upper limit of a disk copy's bandwidth in KiB/s (rsync --bwlimit, "
                    "scp -l in Kbit/s accordingly); 0 means unlimited."),
]


# Rolling upgrades (docs/upgrades.md): pin what a service sends to what the
# oldest service still running understands.
UPGRADE_LEVELS_OPTS = [
    cfg.StrOpt("compute", regex=r"^\d+\.\d+$",
               help="Highest compute RPC version this service sends (e.g. 2.0) while "
                    "older compute agents run; unset: the newest this release knows."),
    cfg.StrOpt("conductor", regex=r"^\d+\.\d+$",
               help="Highest conductor RPC version this service sends (e.g. 2.0) while "
                    "older conductors run; unset: the newest this release knows."),
]


def register_opts(conf):
    conf.register_opts(DEFAULT_OPTS)
    conf.register_opts(UPGRADE_LEVELS_OPTS, group="upgrade_levels")
    conf.register_opts(DATABASE_OPTS, group="database")
    conf.register_opts(API_OPTS, group="api")
    conf.register_opts(COMPUTE_OPTS, group="compute")
    conf.register_opts(FAKE_OPTS, group="fake")
    conf.register_opts(ALL_OPTS, group="all")
    conf.register_opts(LIBVIRT_OPTS, group="libvirt")
    conf.register_opts(TRANSFER_OPTS, group="transfer")
    for group, opts in HOST_DRIVER_OPTS:
        conf.register_opts(opts, group=group)
    logging.register_options(conf)
    # Register oslo.messaging's transport options now (it would on first use,
    # with these same objects) so that transport_url can be read and defaulted
    # before any transport exists. Its list_opts() returns copies, which would
    # clash with the originals later.
    conf.register_opts(oslo_messaging_transport._transport_opts)
    conf.register_opts(oslo_messaging_client._client_opts)  # rpc_response_timeout
    conf.register_opts(oslo_messaging_notifier._notifier_opts,
                       group="oslo_messaging_notifications")
    _register_global_messaging_opts(conf)
    oslo_messaging.set_transport_defaults("godwit")


def _register_global_messaging_opts(conf):
    """oslo.messaging >= 17 reads [oslo_messaging_tracing] and
    [oslo_messaging_metrics] on every call but registers them on the global
    cfg.CONF only; give our ConfigOpts the same option objects."""
    for module, attr, group in (("oslo_messaging._tracing.client", "oslo_messaging_tracing",
                                 "oslo_messaging_tracing"),
                                ("oslo_messaging._metrics.client", "oslo_messaging_metrics",
                                 "oslo_messaging_metrics")):
        try:
            opts = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):  # an oslo.messaging without it
            continue
        conf.register_opts(opts, group=group)


def new_conf():
    """A fresh ConfigOpts with every Godwit option registered."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    return conf


def parse_args(argv, conf=None, default_config_files=None, prog=None):
    conf = conf if conf is not None else new_conf()
    if default_config_files is None:
        default_config_files = [p for p in ("/etc/godwit/godwit.conf",) if os.path.exists(p)]
    conf(argv, project="godwit", prog=prog, default_config_files=default_config_files)
    return conf
