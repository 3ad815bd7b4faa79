"""Query-string helpers the REST handlers share: Nova's limit, marker paging
and ISO 8601 times."""

from oslo_utils import timeutils

from api import schemas
from godwit import exception

MAX_LIMIT = 1000  # Nova's [api] max_limit
# What SQL's LIMIT takes (a BIGINT); larger limits are refused, smaller ones
# capped at MAX_LIMIT as in Nova.
LIMIT_MAX = 2 ** 63 - 1


def limit_param(req, query, name="limit"):
    """Nova's limit: a non-negative integer, capped at MAX_LIMIT."""
    value = schemas.first(query, name)
    if value is None:
        return None
    return min(schemas.parse_int(value, name, maximum=LIMIT_MAX), MAX_LIMIT)


def page(items, key, marker, limit, missing="marker [{marker}] not found"):
    """Nova's marker/limit paging of a list already filtered and sorted in memory:
    the items after the one whose ``key`` is ``marker``, at most ``limit``. An
    unknown marker is a 400 with the message ``missing`` (Nova words it
    differently per resource)."""
    if marker is not None:
        ids = [key(item) for item in items]
        if marker not in ids:
            raise exception.Invalid(missing.format(marker=marker))
        items = items[ids.index(marker) + 1:]
    return items if limit is None else items[:limit]


def timestamp(value, name):
    if value is None:
        return None
    try:
        return timeutils.normalize_time(timeutils.parse_isotime(value))
    except ValueError:
        raise exception.Invalid(f"{name} must be an ISO 8601 time such as "
                                f"2026-01-31T12:00:00Z, not {value!r}") from None
