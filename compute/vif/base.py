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

    @abc.abstractmethod
    def list_plugged(self):
        """Every VIF of Godwit's this driver has plugged on this host (for the
        reconciler, :mod:`conductor.reconciler`).

        :returns: list of dicts: ``vif_id`` (the VIF's uuid, or as much of it as
            the host keeps, e.g. the 11 characters in a tap's name), ``device``
            (the host-side name), and ``instance_uuid`` if the host knows it
            (else None: the reconciler finds it from the VIF).
        """

    def plug_all(self, instance, network_info):
        for vif in network_info:
            self.plug(instance, vif)

    def unplug_all(self, instance, network_info):
        for vif in network_info:
            self.unplug(instance, vif)
