"""What exists on a fake host, kept on disk so anyone can look.

Every fake driver (virt, VIF, volume, firewall) records what it creates as a
small JSON file under ``<hosts_path>/<host>/<kind>/<id>.json``, written
atomically. A test, another process or an operator can therefore list
exactly which domains, VIF plugs, volume connections and filter rules exist
on each host, which is how the functional tests prove that nothing was left
behind. :class:`FakeHost` is that directory; it is also a small public API
for our users' own tests.

Every record created or removed is also appended to ``effects.log`` (one JSON
line: kind, key, instance, "create" or "delete", process id, time), so a test
can tell whether a step did its work once, or twice after a crash.
"""

import json
import os
import tempfile
import time

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
        created = not os.path.exists(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True)
        os.replace(tmp, path)
        if created:
            self._effect(kind, key, "create", record)

    def _effect(self, kind, key, op, record):
        instance = (record or {}).get("instance_uuid") or key
        line = json.dumps({"kind": kind, "key": key, "instance": instance, "op": op,
                           "pid": os.getpid(), "t": time.time()})
        # One write of one line in append mode: whole lines even from several
        # processes (the source's job writes into the destination's records).
        fd = os.open(os.path.join(self.root, "effects.log"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def effects(self, since=0.0):
        """The records created and removed on this host (after ``since``)."""
        try:
            with open(os.path.join(self.root, "effects.log")) as f:
                out = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [e for e in out if e["t"] >= since]

    def get(self, kind, key):
        try:
            with open(self._path(kind, key)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def delete(self, kind, key):
        """Remove a record; True if it existed (so undo steps stay idempotent)."""
        record = self.get(kind, key)
        try:
            os.unlink(self._path(kind, key))
        except FileNotFoundError:
            return False
        self._effect(kind, key, "delete", record)
        return True

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
