"""oslo.messaging's options, registered on our ``ConfigOpts``.

Not Godwit's own: the sample config lists them under oslo.messaging's
namespace (etc/godwit/godwit-config-generator.conf), so :mod:`godwit.conf.opts`
does not list them.
"""

import importlib

import oslo_messaging
from oslo_messaging import transport as oslo_messaging_transport
from oslo_messaging.notify import notifier as oslo_messaging_notifier
from oslo_messaging.rpc import client as oslo_messaging_client


def register_opts(conf):
    # Register oslo.messaging's transport options now (it would on first use,
    # with these same objects) so that transport_url can be read and defaulted
    # before any transport exists. Its list_opts() returns copies, which would
    # clash with the originals later.
    conf.register_opts(oslo_messaging_transport._transport_opts)
    conf.register_opts(oslo_messaging_client._client_opts)  # rpc_response_timeout
    conf.register_opts(oslo_messaging_notifier._notifier_opts,
                       group="oslo_messaging_notifications")
    _register_global_messaging_opts(conf)
    oslo_messaging.set_transport_defaults("godwit")


def _register_global_messaging_opts(conf):
    """oslo.messaging >= 17 reads [oslo_messaging_tracing] and
    [oslo_messaging_metrics] on every call but registers them on the global
    cfg.CONF only; give our ConfigOpts the same option objects."""
    for module, attr, group in (("oslo_messaging._tracing.client", "oslo_messaging_tracing",
                                 "oslo_messaging_tracing"),
                                ("oslo_messaging._metrics.client", "oslo_messaging_metrics",
                                 "oslo_messaging_metrics")):
        try:
            opts = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):  # an oslo.messaging without it
            continue
        conf.register_opts(opts, group=group)
