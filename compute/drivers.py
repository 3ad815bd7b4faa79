"""Loading the four driver kinds through stevedore entry points."""

from stevedore import driver as stevedore_driver
from stevedore import extension

NAMESPACES = {
    "virt": "godwit.virt_drivers",
    "vif": "godwit.vif_drivers",
    "volume": "godwit.volume_drivers",
    "firewall": "godwit.firewall_drivers",
    "transfer": "godwit.transfer_drivers",
}


def load(kind, name, *args):
    namespace = NAMESPACES[kind]
    try:
        mgr = stevedore_driver.DriverManager(namespace, name, invoke_on_load=True,
                                             invoke_args=args, on_load_failure_callback=None)
    except Exception as e:
        available = sorted(extension.ExtensionManager(namespace).names())
        raise RuntimeError(
            f"Cannot load {kind} driver {name!r} ({e}); entry points in {namespace}: "
            f"{', '.join(available) or 'none'}. Set [compute] {kind}_driver to one of "
            "them.") from e
    return mgr.driver
