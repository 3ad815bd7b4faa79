"""What exists on a fake host, kept on disk so anyone can look.

Every fake driver (virt, VIF, volume, firewall) records what it creates as a
small JSON file under ``<hosts_path>/<host>/<kind>/<id>.json``, written
atomically. A test, another process or an operator can therefore list
exactly which domains, VIF plugs, volume connections and filter rules exist
on each host, which is how the functional tests prove that nothing was left
behind. :class:`FakeHost` is that directory; it is also a small public API
for our users' own tests.
"""

import json
import os
import tempfile

KINDS = ("domains", "vifs", "volumes", "filters")


class FakeHost:
    def __init__(self, hosts_path, host):
        self.host = host
        self.root = os.path.join(hosts_path, host)
        for kind in KINDS:
            os.makedirs(os.path.join(self.root, kind), exist_ok=True)

    def _path(self, kind, key):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad record key {key!r}")
        return os.path.join(self.root, kind, key + ".json")

    def put(self, kind, key, record):
        path = self._path(kind, key)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True)
        os.replace(tmp, path)

    def get(self, kind, key):
        try:
            with open(self._path(kind, key)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def delete(self, kind, key):
        """Remove a record; True if it existed (so undo steps stay idempotent)."""
        try:
            os.unlink(self._path(kind, key))
            return True
        except FileNotFoundError:
            return False

    def keys(self, kind):
        d = os.path.join(self.root, kind)
        return sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json"))

    def records(self, kind):
        out = {}
        for key in self.keys(kind):
            rec = self.get(kind, key)
            if rec is not None:
                out[key] = rec
        return out

    def snapshot(self):
        """Everything on this host: {kind: {key: record}}."""
        return {kind: self.records(kind) for kind in KINDS}

    def is_empty_for(self, instance_uuid):
        """True if nothing on this host belongs to ``instance_uuid``."""
        for recs in self.snapshot().values():
            for key, rec in recs.items():
                if key == instance_uuid or rec.get("instance_uuid") == instance_uuid:
                    return False
        return True
