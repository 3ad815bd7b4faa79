"""Firewall filter interface: per-instance ingress filtering on this host."""

import abc


class FirewallDriver(abc.ABC):
    def __init__(self, conf, host):
        self.conf = conf
        self.host = host

    @abc.abstractmethod
    def apply_instance_filter(self, instance, network_info):
        """Install the instance's filter rules on this host. Idempotent."""

    @abc.abstractmethod
    def unfilter_instance(self, instance, network_info):
        """Remove the instance's rules from this host; quiet if absent."""

    @abc.abstractmethod
    def list_filtered(self):
        """The instances this driver keeps filter rules for on this host (for the
        reconciler): a list of instance uuids."""
