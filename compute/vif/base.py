"""Virtual interface driver interface: attach guests' NICs to host networking."""

import abc


class VifDriver(abc.ABC):
    def __init__(self, conf, host):
        self.conf = conf
        self.host = host

    @abc.abstractmethod
    def plug(self, instance, vif):
        """Create the host side of ``vif`` (a virtual_interfaces row). Idempotent."""

    @abc.abstractmethod
    def unplug(self, instance, vif):
        """Remove the host side of ``vif``; quiet if it is already gone."""

    def plug_all(self, instance, network_info):
        for vif in network_info:
            self.plug(instance, vif)

    def unplug_all(self, instance, network_info):
        for vif in network_info:
            self.unplug(instance, vif)
