"""Fake VIF driver: records each plugged VIF in the fake host's directory."""

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.vif import base


class FakeVifDriver(base.VifDriver):
    def __init__(self, conf, host):
        super().__init__(conf, host)
        self.fake = FakeHost(conf.fake.hosts_path, host)
        self.faults = fault_injection.for_host(host, self.fake.root, conf.fake.faults)

    def plug(self, instance, vif):
        self.faults.check("vif_plug", instance)
        self.fake.put("vifs", vif["uuid"], {"instance_uuid": instance["uuid"],
                                            "address": vif["address"],
                                            "network_id": vif.get("network_id")})

    def unplug(self, instance, vif):
        self.faults.check("vif_unplug", instance)
        self.fake.delete("vifs", vif["uuid"])

    def list_plugged(self):
        return [{"vif_id": key, "device": key, "instance_uuid": rec.get("instance_uuid")}
                for key, rec in self.fake.records("vifs").items()]
