"""[transfer] options: copying disks between compute hosts for cold migration
and resize (compute/transfer/, docs/cold-migration-transfer.md)."""

from oslo_config import cfg

GROUP = "transfer"

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


def register_opts(conf):
    conf.register_opts(TRANSFER_OPTS, group=GROUP)


def list_opts():
    return {GROUP: TRANSFER_OPTS}
