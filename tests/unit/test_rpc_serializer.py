"""godwit.rpc.to_primitive gives what oslo's jsonutils.to_primitive gives."""

import datetime
import uuid

import pytest
from oslo_serialization import jsonutils

from godwit import exception, rpc


class _Thing:
    def __init__(self):
        self.a = 1
        self.when = datetime.datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("value", [
    None, 1, 2.5, True, "x",
    {"id": 3, "created_at": datetime.datetime(2026, 11, 25, 20, 1, 2, 345),
     "updated_at": datetime.datetime(2026, 11, 25, 20, 1, 2), "deleted_at": None,
     "nested": {"list": [1, "a", None, (2, 3)], "flag": False}},
    [{"instance": {"uuid": "u", "launched_at": datetime.datetime(2026, 1, 1)},
      "network_info": [], "block_device_info": [{"boot_index": 0}]}],
    (1, {"a": [datetime.date(2026, 1, 1)]}),
    {"u": uuid.UUID(int=5), "b": b"bytes", "s": {1, 2}, "obj": _Thing(),
     "exc": exception.GodwitException("boom")},
])
def test_same_as_jsonutils(value):
    assert rpc.to_primitive(value) == jsonutils.to_primitive(value, convert_instances=True)
