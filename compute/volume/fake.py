"""Fake volume connector: records each volume connection on the fake host."""

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.volume import base


class FakeVolumeDriver(base.VolumeDriver):
    def __init__(self, conf, host):
        super().__init__(conf, host)
        self.fake = FakeHost(conf.fake.hosts_path, host)
        self.faults = fault_injection.for_host(host, self.fake.root, conf.fake.faults)

    @staticmethod
    def _key(instance, bdm):
        return f"{instance['uuid']}-{bdm['volume_id']}"

    def connect_volume(self, instance, bdm):
        self.faults.check("connect_volume", instance)
        info = {"driver_volume_type": "fake", "volume_id": bdm["volume_id"],
                "instance_uuid": instance["uuid"], "host": self.host}
        self.fake.put("volumes", self._key(instance, bdm), info)
        return info

    def disconnect_volume(self, instance, bdm):
        self.faults.check("disconnect_volume", instance)
        self.fake.delete("volumes", self._key(instance, bdm))

    def list_connections(self):
        return [{"instance_uuid": rec["instance_uuid"], "volume_id": rec["volume_id"]}
                for rec in self.fake.records("volumes").values()]
