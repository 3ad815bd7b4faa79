"""Compute nodes: what each hypervisor host reports it has.

Mixed into :class:`godwit.db.api.Database`. What a host holds is derived
from the instances and moves on it (:mod:`godwit.db.claims`).
"""

from sqlalchemy import select

from godwit import exception
from godwit.db import models
from godwit.db.common import _NODE_BY_HOST, _first, _new_uuid


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
