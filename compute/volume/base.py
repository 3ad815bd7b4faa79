"""Volume connector interface: make a volume reachable from this host."""

import abc


class VolumeDriver(abc.ABC):
    def __init__(self, conf, host):
        self.conf = conf
        self.host = host

    @abc.abstractmethod
    def connect_volume(self, instance, bdm):
        """Connect the volume of ``bdm`` on this host. Idempotent.

        :returns: connection_info dict describing the attachment.
        """

    @abc.abstractmethod
    def disconnect_volume(self, instance, bdm):
        """Disconnect the volume of ``bdm`` on this host; quiet if not connected."""

    @abc.abstractmethod
    def list_connections(self):
        """Every volume connection this driver made on this host (for the
        reconciler): list of dicts with ``instance_uuid`` and ``volume_id``."""

    def volumes(self, block_device_info):
        return [b for b in block_device_info or [] if b.get("destination_type") == "volume"]

    def connect_all(self, instance, block_device_info):
        return [self.connect_volume(instance, b) for b in self.volumes(block_device_info)]

    def disconnect_all(self, instance, block_device_info):
        for b in self.volumes(block_device_info):
            self.disconnect_volume(instance, b)
