"""godwit-conductor: the service that owns the database and drives moves."""

from conductor import manager as conductor_manager
from conductor import rpcapi as conductor_rpcapi
from godwit import rpc, service
from godwit.cmd import common


def build(conf, transport, host=None):
    mgr = conductor_manager.ConductorManager(conf, transport, host=host)
    svc = service.Service(conf, transport, conductor_rpcapi.TOPIC, mgr.host, [mgr], mgr)
    svc.add_periodic("conductor-heartbeat", conf.report_interval, mgr.heartbeat)
    svc.add_periodic("migration-watchdog", conf.migration_watchdog_interval,
                     mgr.watchdog_sweep)
    if conf.resize_confirm_window > 0:
        svc.add_periodic("resize-auto-confirm", min(conf.resize_confirm_window, 60),
                         mgr.auto_confirm)
    return svc


def main(argv=None):
    conf = common.init(argv, prog="godwit-conductor")
    transport = rpc.get_transport(conf)
    svc = build(conf, transport)
    svc.start()
    service.wait_for_signal([svc])
    rpc.cleanup()
