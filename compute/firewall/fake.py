"""Fake firewall driver: records each instance's filter rules on the fake host."""

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.firewall import base


class FakeFirewallDriver(base.FirewallDriver):
    def __init__(self, conf, host):
        super().__init__(conf, host)
        self.fake = FakeHost(conf.fake.hosts_path, host)
        self.faults = fault_injection.for_host(host, self.fake.root, conf.fake.faults)

    def apply_instance_filter(self, instance, network_info):
        self.faults.check("apply_instance_filter", instance)
        rules = [{"direction": "ingress", "mac": v["address"], "action": "accept-established"}
                 for v in network_info or []]
        self.fake.put("filters", instance["uuid"], {"instance_uuid": instance["uuid"],
                                                    "rules": rules})

    def unfilter_instance(self, instance, network_info):
        self.faults.check("unfilter_instance", instance)
        self.fake.delete("filters", instance["uuid"])

    def list_filtered(self):
        return self.fake.keys("filters")
