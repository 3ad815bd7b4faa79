"""Every exception that crosses RPC comes back as itself.

oslo.messaging sends a failing endpoint's exception as its module, class,
message and kwargs, and the caller rebuilds ``cls(message, **kwargs)`` only
for modules in ``allowed_remote_exmods``; anything else arrives as an opaque
RemoteError, so the API would answer 500 instead of the refusal's status.
"""

import importlib
import inspect
import pkgutil
import re
import sys

import oslo_messaging
import pytest
from oslo_messaging._drivers import common as driver_common

from godwit import exception, rpc

# GodwitException subclasses that never leave their process (caught where
# raised, or raised in the API itself); everything else must be in
# godwit.exception.
LOCAL_ONLY = {
    "compute.migration_monitor.MigrationAborted",
    "api.microversion.VersionNotAcceptable",
    "api.wsgi.NotAuthenticated",
    "api.cmd.UnsafeAuthConfig",
}
PACKAGES = ("api", "compute", "conductor", "godwit")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sr]")


def _classes():
    return sorted((obj for _, obj in inspect.getmembers(exception, inspect.isclass)
                   if issubclass(obj, Exception) and obj.__module__ == exception.__name__),
                  key=lambda c: c.__name__)


def _raised(cls):
    kwargs = {name: f"<{name}>" for name in PLACEHOLDER.findall(cls.msg_fmt)}
    if "hint" in inspect.signature(cls.__init__).parameters:
        kwargs["hint"] = "Do this."
    try:
        raise cls(**kwargs)
    except cls as e:
        return e, driver_common.serialize_remote_exception((type(e), e, e.__traceback__))


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_round_trip(cls):
    original, data = _raised(cls)
    back = driver_common.deserialize_remote_exception(data, rpc.ALLOWED_EXMODS)
    assert not isinstance(back, oslo_messaging.RemoteError), back
    assert type(back).__mro__[1] is cls        # oslo.messaging's "<cls>_Remote" subclass
    assert back.message == original.message
    assert "%(" not in original.message        # the template was filled
    assert str(back).startswith(original.message)   # then the remote traceback
    assert back.kwargs == original.kwargs
    assert back.code == original.code


@pytest.mark.parametrize("cls", [exception.VifPlugFailed, exception.VolumeConnectFailed,
                                 exception.FirewallError], ids=lambda c: c.__name__)
def test_host_driver_errors_are_the_shared_classes(cls):
    # The drivers raise these under their old names; they must be the classes
    # of godwit.exception, which the conductor can rebuild.
    from compute.firewall import nftables
    from compute.vif import common
    from compute.volume import connections
    assert cls in (common.VifPlugFailed, connections.VolumeConnectFailed,
                   nftables.FirewallError)
    _, data = _raised(cls)
    back = driver_common.deserialize_remote_exception(data, rpc.ALLOWED_EXMODS)
    assert isinstance(back, cls) and back.code == cls.code


def test_an_exception_outside_godwit_exception_would_arrive_as_remote_error():
    # What the test above guards against (VifPlugFailed and friends before).
    local = type("LocalError", (Exception,), {"__module__": "compute.x"})
    try:
        raise local("r")
    except local as e:
        data = driver_common.serialize_remote_exception((type(e), e, e.__traceback__))
    back = driver_common.deserialize_remote_exception(data, rpc.ALLOWED_EXMODS)
    assert isinstance(back, oslo_messaging.RemoteError)


def test_no_other_module_defines_an_exception_that_could_cross_rpc():
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + ".",
                                          onerror=lambda name: None):
            try:
                importlib.import_module(info.name)
            except Exception:   # optional dependencies (libvirt, os-brick...)
                continue
    found = set()
    todo = [exception.GodwitException]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            module = sys.modules.get(sub.__module__)
            # Classes of the project's modules only (not ones tests make up).
            if sub.__module__ != exception.__name__ and \
                    sub.__module__.split(".")[0] in PACKAGES and \
                    getattr(module, sub.__name__, None) is sub:
                found.add(f"{sub.__module__}.{sub.__qualname__}")
    assert found <= LOCAL_ONLY, found - LOCAL_ONLY
