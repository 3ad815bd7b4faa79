"""JSON Schemas of request bodies and query strings, per microversion.

Each ``*_SCHEMAS`` list holds ``(min_version, max_version, schema)`` rows; the
row whose range holds the request's microversion is the one applied, and a
request at a version with no row is not validated (as in Nova, where e.g.
the ``migrate`` body is unchecked before 2.56). The schemas say what Nova's
say for the same actions and versions (the tables in
``tests/unit/test_api_schemas_nova.py`` pin that down); validation failures
answer 400 with Nova's wording ("Invalid input for field/attribute ...").

Query strings are validated the way Nova does: the query becomes a dict of
lists (``?a=1&a=2`` -> ``{"a": ["1", "2"]}``); with ``additionalProperties``
true unknown parameters are dropped, with false they are refused.
"""

import copy
import uuid

import jsonschema
from oslo_utils import timeutils

from api import regex
from godwit import exception

# ---------------------------------------------------------------- parameter types
# The largest value of an Integer column (PostgreSQL's int4, MySQL's INT):
# request integers stored in or compared with one are bounded by it.
DB_INT_MAX = 2 ** 31 - 1
# Nova's boolean: JSON booleans and the usual spellings of true/false.
BOOLEAN = {"type": ["boolean", "string"],
           "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                    False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No",
                    "no"]}
TRUE_STRINGS = {"true", "1", "on", "yes"}
# A host name as the services table holds it (letters, digits, - . _).
FQDN = {"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255}
HOST = dict(FQDN, type=["string", "null"])
FLAVOR_REF = {"type": ["string", "integer"], "minLength": 1}
DISK_CONFIG = {"type": "string", "enum": ["AUTO", "MANUAL"]}
NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0,
                        "minLength": 1}
POSITIVE_INTEGER = dict(NON_NEGATIVE_INTEGER, minimum=1)
NAME = {"type": "string", "format": "name", "minLength": 1, "maxLength": 255}
DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}


def multi_params(schema):
    return {"type": "array", "items": schema}


def single_param(schema):
    return dict(multi_params(schema), maxItems=1)


QUERY = multi_params({"type": "string"})
DATE_TIME = {"type": "string", "format": "date-time"}


def to_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).lower() in TRUE_STRINGS


# ------------------------------------------------------------------------ validator
FORMATS = jsonschema.FormatChecker([])


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value):
    if not isinstance(value, str):
        return True
    timeutils.parse_isotime(value)
    return True


@FORMATS.checks("uuid", raises=ValueError)
def _uuid(value):
    if isinstance(value, str):
        uuid.UUID(value)
    return True


@FORMATS.checks("name", raises=ValueError)
def _name(value):
    # Printable characters, not starting or ending with white space.
    if isinstance(value, str):
        if value != value.strip() or not value.isprintable():
            raise ValueError("printable characters, not starting or ending with white space")
    return True


def _number(instance):
    for kind in (int, float):
        try:
            return kind(instance)
        except (TypeError, ValueError):
            continue
    return None


def _bound(name):
    original = jsonschema.Draft202012Validator.VALIDATORS[name]

    def check(validator, bound, instance, schema):
        # Nova compares numeric strings ("10") against minimum/maximum too.
        value = _number(instance) if not isinstance(instance, bool) else None
        if value is None:
            return
        yield from original(validator, bound, value, schema)
    return check


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"minimum": _bound("minimum"), "maximum": _bound("maximum")})


def _version_note(req):
    return f" (checked at API version {req.api_version})"


def _pick(req, versions):
    for min_v, max_v, schema in versions:
        if req.api_version.matches(min_v, max_v):
            return schema
    return None


def check(schema, body, req=None, is_body=True):
    """Validate ``body`` against ``schema``; raise Invalid with Nova's wording."""
    try:
        error = jsonschema.exceptions.best_match(
            _Validator(schema, format_checker=FORMATS).iter_errors(body),
            key=_relevance)
    except TypeError as e:  # e.g. a non-string key under patternProperties
        raise exception.Invalid(str(e)) from None
    if error is None:
        return
    message = error.message
    if error.cause is not None and error.validator == "format":
        message = f"{error.instance!r} is not a '{error.validator_value}'"
    if len(error.path):
        if is_body:
            detail = (f"Invalid input for field/attribute {error.path[-1]}. "
                      f"Value: {error.instance}. {message}")
        else:
            detail = (f"Invalid input for query parameters {error.path[0]}. "
                      f"Value: {error.instance}. {message}")
    else:
        detail = message
    if req is not None:
        detail += _version_note(req)
    raise exception.Invalid(detail)


def _relevance(error):
    # Prefer the deepest error, as Nova's messages name the offending field.
    return (len(error.path), jsonschema.exceptions.relevance(error))


def validate(req, versions, body):
    """Validate a request body against the row of ``versions`` for its microversion."""
    schema = _pick(req, versions)
    if schema is not None:
        check(schema, body, req)


def validate_query(req, versions):
    """Validate ``req``'s query string; return it as a dict of lists, unknowns dropped
    where the schema allows extra parameters (Nova strips them)."""
    try:
        query = req.GET.dict_of_lists()
    except UnicodeDecodeError:
        raise exception.Invalid("Query string is not UTF-8 encoded") from None
    schema = _pick(req, versions)
    if schema is None:
        return query
    if schema.get("additionalProperties", True) is not False:
        props = set(schema.get("properties", {}))
        query = {k: v for k, v in query.items() if k in props or k.startswith("_")}
    check(schema, query, req, is_body=False)
    return query


def parse_int(value, name, maximum=DB_INT_MAX, minimum=0):
    """``value`` (a query or path parameter) as an int: ASCII digits only
    (``str.isdigit`` takes '²' and other digits int() refuses), at most as many
    as ``maximum`` has, so int() never sees thousands of digits."""
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(maximum))) \
            or not minimum <= int(text) <= maximum:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise exception.Invalid(f"{name} must be an integer from {minimum} to {maximum} "
                                f"written in ASCII digits, not {shown!r}")
    return int(text)


def first(query, name, default=None):
    """The last value of a query parameter (Nova's req.GET.get semantics)."""
    values = query.get(name)
    return values[-1] if values else default


# ------------------------------------------------------------------ request bodies
def _action(name, properties, required):
    return {"type": "object",
            "properties": {name: {"type": "object", "properties": properties,
                                  "required": required, "additionalProperties": False}},
            "required": [name], "additionalProperties": False}


_BLOCK_MIGRATION_AUTO = dict(BOOLEAN, enum=BOOLEAN["enum"] + ["auto"])

MIGRATE_LIVE_V21 = _action("os-migrateLive",
                           {"block_migration": BOOLEAN, "disk_over_commit": BOOLEAN,
                            "host": HOST},
                           ["block_migration", "disk_over_commit", "host"])
MIGRATE_LIVE_V225 = _action("os-migrateLive",
                            {"block_migration": _BLOCK_MIGRATION_AUTO, "host": HOST},
                            ["block_migration", "host"])
MIGRATE_LIVE_V230 = copy.deepcopy(MIGRATE_LIVE_V225)
MIGRATE_LIVE_V230["properties"]["os-migrateLive"]["properties"]["force"] = BOOLEAN

MIGRATE_LIVE = [
    ("2.1", "2.24", MIGRATE_LIVE_V21),
    ("2.25", "2.29", MIGRATE_LIVE_V225),
    ("2.30", "2.67", MIGRATE_LIVE_V230),
    ("2.68", None, MIGRATE_LIVE_V225),  # 2.68 drops force again
]

# Godwit's extension: the body of a live migration's dry run (all optional).
LIVE_MIGRATION_DRY_RUN = {"type": "object",
                          "properties": {"block_migration": _BLOCK_MIGRATION_AUTO,
                                         "host": HOST},
                          "additionalProperties": False}

# Before 2.56 Nova does not validate the migrate body at all (and ignores it).
MIGRATE = [
    ("2.56", None, {"type": "object",
                    "properties": {"migrate": {"type": ["object", "null"],
                                               "properties": {"host": HOST},
                                               "additionalProperties": False}},
                    "required": ["migrate"], "additionalProperties": False}),
]

RESIZE = [
    ("2.1", None, _action("resize", {"flavorRef": FLAVOR_REF,
                                     "OS-DCF:diskConfig": DISK_CONFIG}, ["flavorRef"])),
]


def any_value_action(name):
    """Nova's schema for confirmResize, revertResize, os-start, os-stop: the key
    must be there and alone; its value is not checked (null is what clients send)."""
    return [("2.1", None, {"type": "object", "properties": {name: {}},
                           "required": [name], "additionalProperties": False})]


REBOOT_TYPES = ["HARD", "Hard", "hard", "SOFT", "Soft", "soft"]
REBOOT = [
    ("2.1", None, {"type": "object", "properties": {"reboot": {
        "type": "object", "properties": {"type": {"enum": REBOOT_TYPES}},
        "required": ["type"], "additionalProperties": False}},
        "required": ["reboot"], "additionalProperties": False}),
]

# Godwit's set-speed and set-downtime (api/servers.py): the largest values
# taken. 1 TiB/s is beyond any network; a pause of more than a minute is no
# live migration (force-complete pauses the guest until the copy ends).
MAX_MIGRATION_SPEED_MIB = 1024 * 1024
MAX_MIGRATION_DOWNTIME_MS = 60000

FORCE_COMPLETE = [
    ("2.22", None, {"type": "object", "properties": {"force_complete": {"type": "null"}},
                    "required": ["force_complete"], "additionalProperties": False}),
]

# A volume's id as Cinder writes it. It ends up in file and device names on
# the hosts, so nothing else is accepted (uuid.UUID would take braces, urn:
# prefixes and missing hyphens).
VOLUME_UUID = {"type": "string",
               "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          "[0-9a-fA-F]{12}$"}
# One block_device_mapping_v2 entry: Nova's fields, each bounded by the
# column it is stored in, so that a bad entry is refused before the server's
# row is written.
BLOCK_DEVICE_MAPPING_V2 = {
    "type": "object",
    "properties": {
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "uuid": VOLUME_UUID,
        "device_name": {"type": ["string", "null"], "maxLength": 255},
        "device_type": {"type": ["string", "null"], "maxLength": 32},
        "disk_bus": {"type": ["string", "null"], "maxLength": 255},
        "guest_format": {"type": ["string", "null"], "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]{1,10}$",
                       "minimum": -1, "maximum": DB_INT_MAX},
        "volume_size": {"type": ["integer", "string", "null"], "pattern": "^[0-9]{1,10}$",
                        "minimum": 1, "maximum": DB_INT_MAX},
        "delete_on_termination": BOOLEAN,
        "tag": {"type": "string", "maxLength": 60},
        "volume_type": {"type": ["string", "null"], "maxLength": 255},
        "no_device": {},
    },
    "additionalProperties": False}

# Server create: the subset of Nova's schema that Godwit models (no networks,
# personality or scheduler hints); names follow Nova's rules.
CREATE_SERVER = [
    ("2.1", None, {
        "type": "object",
        "properties": {"server": {
            "type": "object",
            "properties": {
                "name": NAME,
                "flavorRef": FLAVOR_REF,
                "imageRef": {"type": "string", "maxLength": 255},
                "availability_zone": NAME,
                "networks": {"oneOf": [{"type": "array"},
                                       {"type": "string", "enum": ["none", "auto"]}]},
                "min_count": POSITIVE_INTEGER,
                "max_count": POSITIVE_INTEGER,
                "metadata": {"type": "object"},
                "key_name": NAME,
                "security_groups": {"type": "array"},
                "user_data": {"type": ["string", "null"], "maxLength": 65535},
                "config_drive": BOOLEAN,
                "block_device_mapping_v2": {"type": "array",
                                            "items": BLOCK_DEVICE_MAPPING_V2},
                "OS-DCF:diskConfig": DISK_CONFIG,
                "description": DESCRIPTION,
                "adminPass": {"type": "string"},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False}},
        "required": ["server"], "additionalProperties": True}),
]

# PUT /os-services/{action} before 2.53 (host and binary in the body)...
SERVICE_UPDATE_LEGACY = {
    "type": "object",
    "properties": {"host": FQDN,
                   "binary": {"type": "string", "minLength": 1, "maxLength": 255},
                   "disabled_reason": {"type": "string", "minLength": 1, "maxLength": 255}},
    "required": ["host", "binary"], "additionalProperties": False}
SERVICE_UPDATE_V211 = copy.deepcopy(SERVICE_UPDATE_LEGACY)
SERVICE_UPDATE_V211["properties"]["forced_down"] = BOOLEAN
# ... and PUT /os-services/{uuid} from 2.53 (the service is in the path).
SERVICE_UPDATE_V253 = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["enabled", "disabled"]},
                   "disabled_reason": {"type": "string", "minLength": 1, "maxLength": 255},
                   "forced_down": BOOLEAN},
    "additionalProperties": False}
SERVICE_UPDATE = [
    ("2.1", "2.10", SERVICE_UPDATE_LEGACY),
    ("2.11", "2.52", SERVICE_UPDATE_V211),
    ("2.53", None, SERVICE_UPDATE_V253),
]

# ---------------------------------------------------------------- query strings
_OPEN = {"type": "object", "properties": {}, "additionalProperties": True}

_MIGRATIONS_V21 = {
    "type": "object",
    "properties": {k: QUERY for k in ("hidden", "host", "instance_uuid", "source_compute",
                                      "status", "migration_type")},
    "additionalProperties": True}
_MIGRATIONS_V259 = copy.deepcopy(_MIGRATIONS_V21)
_MIGRATIONS_V259["properties"].update({
    "limit": single_param(NON_NEGATIVE_INTEGER),
    "marker": single_param({"type": "string"}),
    "changes-since": single_param(DATE_TIME)})
_MIGRATIONS_V259["additionalProperties"] = False
_MIGRATIONS_V266 = copy.deepcopy(_MIGRATIONS_V259)
_MIGRATIONS_V266["properties"]["changes-before"] = single_param(DATE_TIME)
_MIGRATIONS_V280 = copy.deepcopy(_MIGRATIONS_V266)
_MIGRATIONS_V280["properties"].update({"user_id": single_param({"type": "string"}),
                                       "project_id": single_param({"type": "string"})})
MIGRATIONS_QUERY = [
    ("2.1", "2.58", _MIGRATIONS_V21),
    ("2.59", "2.65", _MIGRATIONS_V259),
    ("2.66", "2.79", _MIGRATIONS_V266),
    ("2.80", None, _MIGRATIONS_V280),
]

_SERVICES = {"type": "object", "properties": {"host": QUERY, "binary": QUERY},
             "additionalProperties": True}
SERVICES_QUERY = [
    ("2.1", "2.74", _SERVICES),
    ("2.75", None, dict(_SERVICES, additionalProperties=False)),
]

_ACTIONS_V258 = {
    "type": "object",
    "properties": {"limit": single_param(NON_NEGATIVE_INTEGER),
                   "marker": single_param({"type": "string"}),
                   "changes-since": single_param(DATE_TIME)},
    "additionalProperties": False}
_ACTIONS_V266 = copy.deepcopy(_ACTIONS_V258)
_ACTIONS_V266["properties"]["changes-before"] = single_param(DATE_TIME)
ACTIONS_QUERY = [
    ("2.1", "2.57", _OPEN),
    ("2.58", "2.65", _ACTIONS_V258),
    ("2.66", None, _ACTIONS_V266),
]

_FLAVOR_SORT_KEYS = ["created_at", "description", "disabled", "ephemeral_gb", "flavorid",
                     "id", "is_public", "memory_mb", "name", "root_gb", "rxtx_factor",
                     "swap", "updated_at", "vcpu_weight", "vcpus"]
_FLAVORS = {
    "type": "object",
    "properties": {
        "limit": multi_params(NON_NEGATIVE_INTEGER),
        "marker": QUERY, "is_public": QUERY, "minRam": QUERY, "minDisk": QUERY,
        "sort_key": multi_params({"type": "string", "enum": _FLAVOR_SORT_KEYS}),
        "sort_dir": multi_params({"type": "string", "enum": ["asc", "desc"]})},
    "additionalProperties": True}
FLAVORS_QUERY = [
    ("2.1", "2.74", _FLAVORS),
    ("2.75", None, dict(_FLAVORS, additionalProperties=False)),
]

_HYPERVISORS_V233 = {"type": "object",
                     "properties": {"limit": multi_params(NON_NEGATIVE_INTEGER),
                                    "marker": QUERY},
                     "additionalProperties": True}
_HYPERVISORS_V253 = {
    "type": "object",
    "properties": {"limit": single_param(NON_NEGATIVE_INTEGER),
                   "marker": single_param({"type": "string"}),
                   "hypervisor_hostname_pattern": single_param(FQDN),
                   "with_servers": single_param(BOOLEAN)},
    "additionalProperties": False}
HYPERVISORS_QUERY = [
    ("2.1", "2.32", _OPEN),
    ("2.33", "2.52", _HYPERVISORS_V233),
    ("2.53", None, _HYPERVISORS_V253),
]

_REGEX_QUERY = multi_params({"type": "string", "format": "regex"})
_SERVER_SORT_KEYS = [
    "access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone", "config_drive",
    "created_at", "display_description", "display_name", "host", "hostname", "image_ref",
    "instance_type_id", "kernel_id", "key_name", "launch_index", "launched_at", "locked_by",
    "node", "power_state", "progress", "project_id", "ramdisk_id", "root_device_name",
    "task_state", "terminated_at", "updated_at", "user_id", "uuid", "vm_state"]
_SERVER_IGNORED_SORT_KEYS = [
    "architecture", "cell_name", "cleaned", "default_ephemeral_device",
    "default_swap_device", "deleted", "deleted_at", "disable_terminate", "ephemeral_gb",
    "ephemeral_key_uuid", "id", "key_data", "launched_on", "locked", "memory_mb", "os_type",
    "reservation_id", "root_gb", "shutdown_terminate", "user_data", "vcpus", "vm_mode"]
_SERVERS = {
    "type": "object",
    "properties": dict(
        {k: QUERY for k in ("user_id", "project_id", "tenant_id", "launch_index",
                            "image_ref", "image", "vm_state", "task_state", "host", "uuid",
                            "sort_dir", "all_tenants", "soft_deleted", "deleted", "status",
                            "marker", "block_device_mapping", "services", "metadata",
                            "system_metadata", "info_cache", "security_groups",
                            "pci_devices")},
        **{k: _REGEX_QUERY for k in (
            "kernel_id", "ramdisk_id", "hostname", "key_name", "power_state", "node",
            "flavor", "reservation_id", "launched_at", "terminated_at", "availability_zone",
            "name", "display_name", "description", "display_description", "locked_by",
            "root_device_name", "config_drive", "access_ip_v4", "access_ip_v6",
            "auto_disk_config", "progress", "ip", "ip6", "created_at")},
        **{"sort_key": multi_params({"type": "string",
                                     "enum": _SERVER_SORT_KEYS + _SERVER_IGNORED_SORT_KEYS}),
           "changes-since": multi_params(DATE_TIME),
           "limit": multi_params(NON_NEGATIVE_INTEGER)}),
    "additionalProperties": True,
    "patternProperties": {"^_": QUERY}}
_SERVERS_V226 = copy.deepcopy(_SERVERS)
_SERVERS_V226["properties"].update({k: _REGEX_QUERY for k in ("tags", "tags-any", "not-tags",
                                                              "not-tags-any")})
_SERVERS_V266 = copy.deepcopy(_SERVERS_V226)
_SERVERS_V266["properties"]["changes-before"] = multi_params(DATE_TIME)
_SERVERS_V273 = copy.deepcopy(_SERVERS_V266)
_SERVERS_V273["properties"]["locked"] = QUERY
_SERVERS_V275 = copy.deepcopy(_SERVERS_V273)
_SERVERS_V275["properties"]["sort_key"] = multi_params(
    {"type": "string", "enum": _SERVER_SORT_KEYS + ["locked"]})
_SERVERS_V275["additionalProperties"] = False
SERVERS_QUERY = [
    ("2.1", "2.25", _SERVERS),
    ("2.26", "2.65", _SERVERS_V226),
    ("2.66", "2.72", _SERVERS_V266),
    ("2.73", "2.74", _SERVERS_V273),
    ("2.75", None, _SERVERS_V275),
]


@FORMATS.checks("regex", raises=ValueError)
def _regex(value):
    # The filters run on RE2 (api/regex.py): what it refuses is refused here.
    if isinstance(value, str):
        regex.compile_filter(value)
    return True
