"""Flavors, and the defaults a new database gets (``godwit-manage db sync``).

Mixed into :class:`godwit.db.api.Database`.
"""

from sqlalchemy import or_, select

from godwit import exception
from godwit.db import models
from godwit.db.common import _FLAVOR_BY_ID, _first

DEFAULT_FLAVORS = [
    # flavorid, name, memory_mb, vcpus, root_gb
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 1, 20),
    ("3", "m1.medium", 4096, 2, 40),
    ("4", "m1.large", 8192, 4, 80),
]


class FlavorStore:
    def flavor_create(self, values):
        with self.transaction() as s:
            exists = s.scalars(select(models.Flavor).where(or_(
                models.Flavor.name == values["name"],
                models.Flavor.flavorid == values["flavorid"]))).first()
            if exists:
                raise exception.FlavorExists(name=values["name"])
            flavor = models.Flavor(**values)
            s.add(flavor)
            s.flush()
            return flavor.to_dict()

    def flavor_get_by_flavorid(self, flavorid):
        with self.transaction() as s:
            flavor = s.scalars(select(models.Flavor).where(
                models.Flavor.flavorid == str(flavorid))).first()
            if flavor is None:
                raise exception.FlavorNotFound(flavor_id=flavorid)
            return flavor.to_dict()

    def flavor_get(self, flavor_pk):
        with self.connection() as conn:
            flavor = _first(conn, _FLAVOR_BY_ID, {"id": flavor_pk})
        if flavor is None:
            raise exception.FlavorNotFound(flavor_id=flavor_pk)
        return flavor

    def flavor_list(self):
        with self.transaction() as s:
            return [f.to_dict() for f in s.scalars(
                select(models.Flavor).order_by(models.Flavor.memory_mb, models.Flavor.id))]

    def ensure_default_flavors(self):
        with self.transaction() as s:
            if s.scalars(select(models.Flavor).limit(1)).first() is not None:
                return
            for flavorid, name, mem, vcpus, root in DEFAULT_FLAVORS:
                s.add(models.Flavor(flavorid=flavorid, name=name, memory_mb=mem,
                                    vcpus=vcpus, root_gb=root))
