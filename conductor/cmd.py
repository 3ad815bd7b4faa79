"""godwit-conductor: the service that owns the database and drives moves."""

from conductor import controller as controller_endpoint
from conductor import manager as conductor_manager
from conductor import rpcapi as conductor_rpcapi
from godwit import controller, rpc, service
from godwit.cmd import common


def build(conf, transport, host=None):
    mgr = conductor_manager.ConductorManager(conf, transport, host=host)
    svc = service.Service(conf, transport, conductor_rpcapi.TOPIC, mgr.host, [mgr], mgr)
    # The controllers' interface, on a topic and with versions of its own.
    svc.add_rpc_server(controller.TOPIC, [controller_endpoint.ControllerEndpoint(mgr,
                                                                                 transport)])
    svc.add_periodic("conductor-heartbeat", conf.report_interval, mgr.heartbeat)
    svc.add_periodic("broker-check", conf.report_interval, mgr.broker_check,
                     initial_delay=0)
    # Leases, takeovers, deadlines, lost intents, auto-confirm (conductor.engine).
    svc.add_periodic("migration-sweep", min(conf.migration_watchdog_interval,
                                            conf.migration_lease_time / 3), mgr.sweep)
    # Host drains: start, follow and end each drain's moves (conductor.drain).
    svc.add_periodic("host-drains", conf.host_drain_interval, mgr.drain_sweep)
    if conf.reconcile_interval > 0:
        svc.add_periodic("reconcile", conf.reconcile_interval, mgr.reconcile)
    return svc


def main(argv=None):
    conf = common.init(argv, prog="godwit-conductor")
    transport = rpc.get_transport(conf)
    svc = build(conf, transport)
    svc.start()
    service.wait_for_signal([svc], conf.graceful_shutdown_timeout)
    rpc.cleanup()
