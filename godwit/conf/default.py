"""[DEFAULT] options: the host's name, state paths, heartbeats, the scheduler's
ratios, and the conductor's deadlines, leases, sweeps and drains."""

import socket

from oslo_config import cfg

GROUP = "DEFAULT"

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
                     "'call.<host step>' (just before asking a host for the step) or "
                     "'claim' (a live migration's, just before its transaction). Also "
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


def register_opts(conf):
    conf.register_opts(DEFAULT_OPTS)


def list_opts():
    return {GROUP: DEFAULT_OPTS}
