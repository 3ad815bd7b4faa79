"""Compute nodes: what each hypervisor host reports it has.

Mixed into :class:`godwit.db.api.Database`. What a host holds is derived
from the instances and moves on it (:mod:`godwit.db.claims`).
"""

import sqlalchemy as sa
from sqlalchemy import select

from godwit import exception, states
from godwit.db import models
from godwit.db.common import _NODE, _NODE_BY_HOST, _SVC, _first, _new_uuid

# Each host's compute service with its node, if it has one.
_HOSTS_WITH_NODES = select(_SVC, _NODE).select_from(
    _SVC.outerjoin(_NODE, _NODE.c.host == _SVC.c.host)).where(
    _SVC.c.host.in_(sa.bindparam("hosts", expanding=True)),
    _SVC.c.binary == states.SERVICE_COMPUTE)


class ComputeNodeStore:
    def compute_node_upsert(self, host, values):
        with self.transaction() as s:
            node = s.scalars(select(models.ComputeNode).where(
                models.ComputeNode.host == host)).first()
            if node is None:
                node = models.ComputeNode(uuid=_new_uuid(), host=host, **values)
                s.add(node)
            else:
                for k, v in values.items():
                    setattr(node, k, v)
            s.flush()
            return node.to_dict()

    def compute_hosts(self, hosts):
        """The compute service and compute node rows of ``hosts``, in one
        statement (a move's checks read both for its source and destination):
        ``{host: (service, node)}``, as service_get_by_host and
        compute_node_get_by_host return them; a host without a compute service
        is left out, one without a node has None."""
        with self.connection() as conn:
            found = {}
            for row in conn.execute(_HOSTS_WITH_NODES, {"hosts": list(hosts)}):
                cols = row._mapping
                service = {c.name: cols[c] for c in _SVC.c}
                node = ({c.name: cols[c] for c in _NODE.c}
                        if cols[_NODE.c.id] is not None else None)
                found[service["host"]] = (service, node)
            return found

    def compute_node_get_by_host(self, host):
        with self.connection() as conn:
            return _first(conn, _NODE_BY_HOST, {"host": host})

    def compute_node_get(self, node_id):
        with self.transaction() as s:
            node = s.get(models.ComputeNode, node_id)
            if node is None:
                raise exception.ComputeHostNotFound(host=node_id)
            return node.to_dict()

    def compute_node_list(self):
        with self.transaction() as s:
            return [n.to_dict() for n in s.scalars(
                select(models.ComputeNode).order_by(models.ComputeNode.id))]
