"""api.query.page: Nova's marker/limit paging of an in-memory list."""

import pytest

from api.query import page
from godwit import exception

ITEMS = [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]


def key(item):
    return item["id"]


def test_after_the_marker_at_most_limit():
    assert page(ITEMS, key, None, None) == ITEMS
    assert page(ITEMS, key, "b", None) == ITEMS[2:]
    assert page(ITEMS, key, "a", 2) == ITEMS[1:3]
    assert page(ITEMS, key, "d", 5) == []
    assert page(ITEMS, key, None, 0) == []


def test_unknown_marker_names_itself():
    with pytest.raises(exception.Invalid, match=r"marker \[zz\] not found"):
        page(ITEMS, key, "zz", 1)
    with pytest.raises(exception.Invalid, match="Marker zz could not be found."):
        page(ITEMS, key, "zz", None, "Marker {marker} could not be found.")
