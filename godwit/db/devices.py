"""An instance's devices: block device mappings (BDMs) and virtual interfaces (VIFs).

Mixed into :class:`godwit.db.api.Database`.
"""

import json

from sqlalchemy import select

from godwit.db import models
from godwit.db.common import _BDMS_OF, _VIF, _VIFS_OF, _all, _new_uuid


class DeviceStore:
    def bdm_list(self, instance_uuid):
        with self.connection() as conn:
            return _all(conn, _BDMS_OF, {"uuid": instance_uuid})

    def bdm_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        with self.transaction() as s:
            bdm = models.BlockDeviceMapping(**values)
            s.add(bdm)
            s.flush()
            return bdm.to_dict()

    def vif_find(self, vif_id):
        """The VIF whose uuid is ``vif_id`` or starts with it (a tap's name keeps
        11 characters of it); None if there is none or it is not unique."""
        with self.connection() as conn:
            rows = _all(conn, select(_VIF).where(_VIF.c.uuid.like(f"{vif_id}%")).limit(2))
        return rows[0] if len(rows) == 1 else None

    def vif_list(self, instance_uuid):
        with self.connection() as conn:
            return _all(conn, _VIFS_OF, {"uuid": instance_uuid})

    def vif_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        if isinstance(values.get("details"), dict):
            values["details"] = json.dumps(values["details"])
        with self.transaction() as s:
            vif = models.VirtualInterface(**values)
            s.add(vif)
            s.flush()
            return vif.to_dict()
