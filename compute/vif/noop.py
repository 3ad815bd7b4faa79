"""No-op VIF driver, for hosts whose networking is managed outside Godwit."""

from compute.vif import base


class NoopVifDriver(base.VifDriver):
    def plug(self, instance, vif):
        pass

    def unplug(self, instance, vif):
        pass

    def list_plugged(self):
        return []   # nothing of Godwit's to find: the host's networking is not ours
