"""No-op firewall driver, for hosts filtered by something else."""

from compute.firewall import base


class NoopFirewallDriver(base.FirewallDriver):
    def apply_instance_filter(self, instance, network_info):
        pass

    def unfilter_instance(self, instance, network_info):
        pass

    def list_filtered(self):
        return []
