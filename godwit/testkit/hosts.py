"""A handle on one fake compute host: what it holds, and faults to arm in it.

The fake drivers keep every domain, VIF plug, volume connection and filter
rule as a JSON record under ``<hosts_path>/<host>/`` (compute/fake_host.py),
and re-read ``<host dir>/faults.json`` at every named step
(compute/fault_injection.py). The handle reads the first and writes the
second, so it works the same whether the host's agent runs, was crashed or
was stopped.
"""

import json
import os
import tempfile
import uuid

from compute import fault_injection
from compute.fake_host import FakeHost


def _is_server_dir(name):
    try:
        uuid.UUID(name.removesuffix("_resize"))
    except ValueError:
        return False
    return True


def fault(step, action, seconds=None, instance=None, once=False):
    """A fault string, ``<step>[@<instance>]:<action>[:<seconds>][:once]``.

    ``action``: fail, hang (up to ``seconds``, then fail), delay (``seconds``,
    then carry on), crash (the agent vanishes at the step), after (the step
    does its work, then the agent vanishes). ``instance``: a server id, to
    hit only that server's moves.
    """
    name = f"{step}@{instance}" if instance else step
    parts = [name, action]
    if seconds is not None or once:
        parts.append("" if seconds is None else f"{seconds:g}")
    if once:
        parts.append("once")
    spec = ":".join(parts)
    fault_injection.parse(spec)  # refuse a bad fault here, not in the agent
    return spec


class FakeHostHandle:
    def __init__(self, name, hosts_path, instances_path):
        self.name = name
        self.instances_path = instances_path
        self._records = FakeHost(hosts_path, name)

    # --- what the host holds ------------------------------------------------
    def domains(self):
        """{server id: domain record} (``power_state``, ``persistent``, ...)."""
        return self._records.records("domains")

    def vifs(self):
        """{VIF id: {"instance_uuid", "address", "network_id"}}."""
        return self._records.records("vifs")

    def volume_connections(self):
        """{connection key: {"instance_uuid", "volume_id", ...}}."""
        return self._records.records("volumes")

    def filters(self):
        """{server id: filter rules} for the servers this host filters traffic of."""
        return self._records.records("filters")

    def disks(self):
        """{directory name: [file names]} of the server directories under this
        host's instances path (``<id>`` or ``<id>_resize``). Hosts on shared
        storage (the kit's default) see the same directories."""
        out = {}
        try:
            names = sorted(os.listdir(self.instances_path))
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(self.instances_path, name)
            # Only servers' directories: not _base (images) nor the drivers'
            # shared-storage probes.
            if os.path.isdir(path) and _is_server_dir(name):
                out[name] = sorted(os.listdir(path))
        return out

    def holds(self, server_id):
        """True if a domain, VIF, volume connection or filter of the server is here."""
        return not self._records.is_empty_for(server_id)

    def effects(self, since=0.0):
        """Every record created or removed here: [{"kind", "key", "instance", "op", "t"}]."""
        return self._records.effects(since)

    def set_dirty_rate(self, server_id, mb_per_s):
        """Simulate a guest that dirties ``mb_per_s`` MiB of memory per second
        (instead of ``[fake] migration_dirty_rate_mb``): its live migration's
        transfer and the driver's estimate (the dry run's, the drain's order)
        both use it. The guest must be on this host; it keeps the rate when it
        moves."""
        rec = self._records.get("domains", server_id)
        if rec is None:
            raise ValueError(f"no domain of {server_id} on {self.name}")
        self._records.put("domains", server_id, dict(rec, dirty_rate_mb=mb_per_s))

    # --- faults --------------------------------------------------------------
    @property
    def _faults_file(self):
        return os.path.join(self._records.root, "faults.json")

    def armed(self):
        try:
            with open(self._faults_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return []

    def arm(self, *faults):
        """Add faults (strings as :func:`fault` makes them); the running agent
        sees them at its next step."""
        for spec in faults:
            fault_injection.parse(spec)
        self._write_faults(self.armed() + list(faults))

    def disarm(self):
        """Remove every fault armed here (a hang already under way stays until
        its time is up or the cloud stops)."""
        self._write_faults([])

    def _write_faults(self, faults):
        # The agent re-reads the file at every step, from other threads: it must
        # never see half of it.
        fd, tmp = tempfile.mkstemp(dir=self._records.root, prefix=".faults-")
        with os.fdopen(fd, "w") as f:
            json.dump(faults, f)
        os.replace(tmp, self._faults_file)

    def __repr__(self):
        return f"<FakeHostHandle {self.name}>"
