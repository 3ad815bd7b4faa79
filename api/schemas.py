"""JSON Schemas of request bodies, per microversion, following Nova's."""

import jsonschema

from godwit import exception

# Nova's boolean: JSON booleans and the usual spellings of true/false.
BOOLEAN = {"type": ["boolean", "string"],
           "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                    False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No",
                    "no"]}
HOST = {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
        "pattern": "^[a-zA-Z0-9-._]*$"}
TRUE_STRINGS = {"true", "1", "on", "yes"}


def to_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).lower() in TRUE_STRINGS


def _action(name, properties, required):
    return {"type": "object",
            "properties": {name: {"type": "object", "properties": properties,
                                  "required": required, "additionalProperties": False}},
            "required": [name], "additionalProperties": False}


# (min_version, max_version, schema)
MIGRATE_LIVE = [
    ("2.1", "2.24", _action("os-migrateLive",
                            {"block_migration": BOOLEAN, "disk_over_commit": BOOLEAN,
                             "host": HOST},
                            ["block_migration", "disk_over_commit", "host"])),
    ("2.25", "2.29", _action("os-migrateLive",
                             {"block_migration": {"oneOf": [BOOLEAN, {"enum": ["auto"]}]},
                              "host": HOST},
                             ["block_migration", "host"])),
    ("2.30", "2.67", _action("os-migrateLive",
                             {"block_migration": {"oneOf": [BOOLEAN, {"enum": ["auto"]}]},
                              "host": HOST, "force": BOOLEAN},
                             ["block_migration", "host"])),
    ("2.68", None, _action("os-migrateLive",
                           {"block_migration": {"oneOf": [BOOLEAN, {"enum": ["auto"]}]},
                            "host": HOST},
                           ["block_migration", "host"])),
]

MIGRATE = [
    ("2.1", "2.55", {"type": "object", "properties": {"migrate": {"type": "null"}},
                     "required": ["migrate"], "additionalProperties": False}),
    ("2.56", None, {"type": "object",
                    "properties": {"migrate": {"oneOf": [
                        {"type": "null"},
                        {"type": "object", "properties": {"host": HOST},
                         "additionalProperties": False}]}},
                    "required": ["migrate"], "additionalProperties": False}),
]

RESIZE = [
    ("2.1", None, _action("resize", {"flavorRef": {"type": ["string", "integer"],
                                                   "minLength": 1},
                                     "OS-DCF:diskConfig": {"enum": ["AUTO", "MANUAL"]}},
                          ["flavorRef"])),
]


def null_action(name):
    return [("2.1", None, {"type": "object", "properties": {name: {"type": "null"}},
                           "required": [name], "additionalProperties": False})]


CREATE_SERVER = [
    ("2.1", None, {
        "type": "object",
        "properties": {"server": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1},
                "imageRef": {"type": "string"},
                "availability_zone": {"type": "string", "minLength": 1, "maxLength": 255},
                "networks": {},
                "min_count": {"type": ["integer", "string"]},
                "max_count": {"type": ["integer", "string"]},
                "metadata": {"type": "object"},
                "key_name": {"type": ["string", "null"]},
                "security_groups": {"type": "array"},
                "user_data": {"type": ["string", "null"]},
                "config_drive": BOOLEAN,
                "block_device_mapping_v2": {"type": "array"},
                "description": {"type": ["string", "null"]},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False}},
        "required": ["server"], "additionalProperties": True}),
]

SERVICE_UPDATE = [
    ("2.53", None, {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["enabled", "disabled"]},
                       "disabled_reason": {"type": "string", "minLength": 1,
                                           "maxLength": 255},
                       "forced_down": BOOLEAN},
        "additionalProperties": False}),
]


def validate(req, versions, body):
    for min_v, max_v, schema in versions:
        if req.api_version.matches(min_v, max_v):
            try:
                jsonschema.validate(body, schema)
            except jsonschema.ValidationError as e:
                where = "/".join(str(p) for p in e.absolute_path) or "body"
                raise exception.Invalid(
                    reason=f"{where}: {e.message} (API version {req.api_version})") from None
            return
    raise exception.Invalid(reason=f"this request is not available at API version "
                                   f"{req.api_version}")
