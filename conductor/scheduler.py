"""Choosing a host: filter every compute host, say why each was refused.

Deliberately small: hosts that are up, enabled, not excluded and have room
pass; the one with the most free RAM wins (spreading load). The refusal
reasons are kept so a 'No valid host' error can list them.
"""

from conductor import checks
from godwit import exception


class Scheduler:
    def __init__(self, db, conf):
        self.db = db
        self.conf = conf

    def candidates(self, need, exclude=(), check=None):
        """Hosts able to take ``need`` (memory_mb, vcpus, disk_gb), best first.

        ``check(node)`` may refuse a host by raising a GodwitException.
        Returns (hosts, refusals) where refusals maps host -> reason.
        """
        refusals = {}
        scored = []
        services = {s["host"]: s for s in self.db.service_list(binary="godwit-compute")}
        for node in self.db.compute_node_list():
            host = node["host"]
            if host in exclude:
                continue
            svc = services.get(host)
            if svc is None or not self.db.is_host_up(svc, self.conf.service_down_time):
                refusals[host] = "compute service is down"
                continue
            if svc["disabled"]:
                refusals[host] = "compute service is disabled"
                continue
            try:
                checks.check_capacity(self.db, self.conf, node, need)
                if check is not None:
                    check(node)
            except exception.GodwitException as e:
                refusals[host] = str(e)
                continue
            scored.append((checks.free_resources(self.db, self.conf, node)["memory_mb"], host))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [h for _, h in scored], refusals


def explain(refusals):
    if not refusals:
        return "There are no other compute hosts."
    return "Refused: " + "; ".join(f"{h}: {r}" for h, r in sorted(refusals.items()))
