"""Compute API microversions (``OpenStack-API-Version: compute X.Y``).

Godwit answers from 2.1 up to :data:`MAX_VERSION`; a request may name a
version with the current header or the legacy ``X-OpenStack-Nova-API-Version``,
or ``latest``. A version outside the range is refused with 406, as in Nova.
"""

import functools

from godwit import exception

MIN_VERSION = "2.1"
MAX_VERSION = "2.80"
SERVICE_TYPE = "compute"


@functools.total_ordering
class APIVersion:
    def __init__(self, text):
        try:
            major, minor = text.split(".")
            self.major, self.minor = int(major), int(minor)
        except (ValueError, AttributeError):
            raise exception.Invalid(
                reason=f"API version {text!r} is not of the form X.Y (e.g. 2.80)") from None

    def __eq__(self, other):
        return (self.major, self.minor) == (other.major, other.minor)

    def __lt__(self, other):
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self):
        return f"{self.major}.{self.minor}"

    def matches(self, min_version=None, max_version=None):
        # Views ask this per row (4000 times for 1000 migrations): the bounds
        # are a handful of literals, parsed once.
        mine = (self.major, self.minor)
        if min_version and mine < _bound(min_version):
            return False
        if max_version and mine > _bound(max_version):
            return False
        return True


@functools.lru_cache(maxsize=256)
def _bound(text):
    version = APIVersion(text)
    return version.major, version.minor


class VersionNotAcceptable(exception.GodwitException):
    code = 406
    msg_fmt = ("Version %(version)s is not supported by the API. Minimum is %(min)s and "
               "maximum is %(max)s.")


def from_headers(headers):
    value = None
    current = headers.get("OpenStack-API-Version")
    if current:
        for item in current.split(","):
            parts = item.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
                value = parts[1].strip()
    if value is None:
        value = headers.get("X-OpenStack-Nova-API-Version")
    if value is None:
        return APIVersion(MIN_VERSION)
    if value.lower() == "latest":
        return APIVersion(MAX_VERSION)
    version = APIVersion(value)
    if not version.matches(MIN_VERSION, MAX_VERSION):
        raise VersionNotAcceptable(version=value, min=MIN_VERSION, max=MAX_VERSION)
    return version
