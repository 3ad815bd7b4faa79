"""Loading the driver kinds through stevedore entry points.

stevedore caches entry points in ~/.cache/python-entrypoints, keyed on file
modification times at about two minutes' resolution, so right after a
``pip install -e .`` it can serve a list without new entry points. When it
finds nothing we ask importlib.metadata directly.
"""

import importlib.metadata

from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exception
from stevedore import extension

NAMESPACES = {
    "virt": "godwit.virt_drivers",
    "vif": "godwit.vif_drivers",
    "volume": "godwit.volume_drivers",
    "firewall": "godwit.firewall_drivers",
}


def available(namespace):
    names = set(extension.ExtensionManager(namespace).names())
    names.update(ep.name for ep in importlib.metadata.entry_points(group=namespace))
    return sorted(names)


def _reraise(manager, entrypoint, error):
    raise error


def load_class(namespace, name):
    """The class behind entry point ``name``; import errors propagate as themselves."""
    try:
        return stevedore_driver.DriverManager(namespace, name, invoke_on_load=False,
                                              on_load_failure_callback=_reraise).driver
    except stevedore_exception.NoMatches:
        for ep in importlib.metadata.entry_points(group=namespace):
            if ep.name == name:
                return ep.load()
        raise


def load(kind, name, *args):
    """Instantiate the ``kind`` driver called ``name`` with ``args``."""
    namespace = NAMESPACES[kind]
    try:
        cls = load_class(namespace, name)
    except Exception as e:
        raise RuntimeError(
            f"Cannot load {kind} driver {name!r} ({e}); entry points in {namespace}: "
            f"{', '.join(available(namespace)) or 'none'}. Set [compute] {kind}_driver to "
            "one of them.") from e
    return cls(*args)
