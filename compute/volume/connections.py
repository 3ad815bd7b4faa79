"""What the real volume drivers share: the BDM's target, the connection ledger.

Each connection a driver makes on a host is recorded as
``<state_path>/volume-connections/<host>/<instance uuid>--<volume id>.json``
(driver, connection_info, time) until it is disconnected, so leftovers after
a failed move are visible on the host (``ls``) and to a reconciler.
"""

import json
import os
import re
import time

from godwit import exception

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


# Defined in godwit.exception so that it crosses RPC as itself (not RemoteError).
VolumeConnectFailed = exception.VolumeConnectFailed


def stored_connection_info(bdm):
    """The BDM's connection_info (JSON text in the database) as a dict."""
    raw = bdm.get("connection_info") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise VolumeConnectFailed(volume_id=bdm.get("volume_id"), host="-",
                                      reason=f"the BDM's connection_info is not JSON: {e}"
                                      ) from None
    return raw if isinstance(raw, dict) else {}


def stored_data(bdm):
    """The 'data' part of the stored connection_info (or the whole, if flat)."""
    info = stored_connection_info(bdm)
    data = info.get("data")
    return dict(data) if isinstance(data, dict) else dict(info)


class ConnectionLedger:
    """One JSON file per connection under <state_path>/volume-connections/<host>/."""

    def __init__(self, state_path, host):
        self.root = os.path.join(state_path, "volume-connections", host)

    def _path(self, instance, bdm):
        name = f"{instance['uuid']}--{bdm.get('volume_id') or bdm.get('uuid')}"
        return os.path.join(self.root, _SAFE.sub("_", name) + ".json")

    def record(self, instance, bdm, driver, connection_info):
        os.makedirs(self.root, exist_ok=True)
        path = self._path(instance, bdm)
        entry = {"instance_uuid": instance["uuid"], "volume_id": bdm.get("volume_id"),
                 "driver": driver, "connection_info": connection_info,
                 "connected_at": time.time()}
        with open(path + ".tmp", "w") as f:
            json.dump(entry, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)

    def get(self, instance, bdm):
        try:
            with open(self._path(instance, bdm)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def forget(self, instance, bdm):
        try:
            os.unlink(self._path(instance, bdm))
        except FileNotFoundError:
            pass

    def entries(self):
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.root, name)) as f:
                        out.append(json.load(f))
                except FileNotFoundError:
                    continue   # disconnected since the listing: not held any more
        return out
