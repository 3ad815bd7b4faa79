"""godwit-compute: the agent on each hypervisor host."""

from compute import manager as compute_manager
from compute import rpcapi as compute_rpcapi
from godwit import rpc, service
from godwit.cmd import common


def build(conf, transport, host=None, instances_path=None):
    host = host or conf.host
    mgr = compute_manager.ComputeManager(conf, host, transport, instances_path=instances_path)
    svc = service.Service(conf, transport, compute_rpcapi.TOPIC, host, [mgr], mgr)
    svc.add_periodic(f"heartbeat-{host}", conf.report_interval, mgr.heartbeat)
    return svc


def main(argv=None):
    conf = common.init(argv, prog="godwit-compute")
    transport = rpc.get_transport(conf)
    svc = build(conf, transport)
    svc.start()
    service.wait_for_signal([svc], conf.graceful_shutdown_timeout)
    rpc.cleanup()
