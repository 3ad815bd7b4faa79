"""Admin views of the cloud: flavors, compute services and hypervisors."""

from cliff.lister import Lister
from cliff.show import ShowOne

from api.client.common import ApiCommand, params, pick, seg
from api.client.http import ClientError

COMPUTE_BINARY = 'godwit-compute'
SERVICE_COLUMNS = ('ID', 'Binary', 'Host', 'Zone', 'Status', 'State', 'Updated At',
                   'Disabled Reason')
SERVICE_FIELDS = ('id', 'binary', 'host', 'zone', 'status', 'state', 'updated_at',
                  'disabled_reason')


class FlavorList(ApiCommand, Lister):
    """List flavors."""

    def take_action(self, args):
        flavors = self.client.get('/flavors/detail')['flavors']
        columns = ('ID', 'Name', 'RAM', 'vCPUs', 'Disk')
        return columns, [pick(f, ('id', 'name', 'ram', 'vcpus', 'disk')) for f in flavors]


class ServiceList(ApiCommand, Lister):
    """List compute services and whether they are up."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only services on this host')
        parser.add_argument('--binary', help='Only this binary (e.g. godwit-compute)')
        return parser

    def take_action(self, args):
        query = params(host=args.host, binary=args.binary)
        services = self.client.get('/os-services', params=query)['services']
        return SERVICE_COLUMNS, [pick(s, SERVICE_FIELDS) for s in services]


class _ServiceUpdate(ApiCommand, ShowOne):
    """Enable or disable the compute service of a host (the scheduler's choice of
    destinations; guests already there keep running)."""

    disable = False

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('host', help="The service's host ('godwit service list')")
        parser.add_argument('--binary', default=COMPUTE_BINARY,
                            help='The service binary (default %(default)s; only compute '
                                 'services can be changed)')
        return parser

    def take_action(self, args):
        reason = getattr(args, 'reason', None)
        if self.client.version_at_least('2.53'):
            service = self._by_uuid(args, reason)
        else:
            service = self._by_action(args, reason)
        fields = [f for f in SERVICE_FIELDS if f in service]
        return tuple(fields), pick(service, fields)

    def _by_uuid(self, args, reason):
        """From 2.53: PUT /os-services/{uuid} with the new status."""
        found = self.client.get('/os-services', params={
            'host': args.host, 'binary': args.binary})['services']
        if not found:
            raise ClientError(f'no {args.binary} service on host {args.host}; '
                              "'godwit service list' shows the services")
        body = {'status': 'disabled' if self.disable else 'enabled'}
        if reason:
            body['disabled_reason'] = reason
        return self.client.put(f"/os-services/{seg(found[0]['id'])}", body)['service']

    def _by_action(self, args, reason):
        """Before 2.53: PUT /os-services/<action> naming host and binary."""
        action = 'enable'
        body = {'host': args.host, 'binary': args.binary}
        if self.disable:
            action = 'disable-log-reason' if reason else 'disable'
            if reason:
                body['disabled_reason'] = reason
        return self.client.put(f'/os-services/{action}', body)['service']


class ServiceEnable(_ServiceUpdate):
    """Enable the compute service of a host: the scheduler may pick it again."""


class ServiceDisable(_ServiceUpdate):
    """Disable the compute service of a host: no new guests or moves are sent to it."""

    disable = True

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--reason', help='Why (shown by service list)')
        return parser


class HypervisorList(ApiCommand, Lister):
    """List hypervisors with their capacity and usage."""

    def take_action(self, args):
        hypervisors = self.client.get('/os-hypervisors/detail')['hypervisors']
        columns = ('ID', 'Hypervisor Hostname', 'Type', 'State', 'Status', 'vCPUs',
                   'vCPUs Used', 'Memory MB', 'Memory MB Used', 'Running VMs')
        fields = ('id', 'hypervisor_hostname', 'hypervisor_type', 'state', 'status',
                  'vcpus', 'vcpus_used', 'memory_mb', 'memory_mb_used', 'running_vms')
        return columns, [pick(h, fields) for h in hypervisors]


class HypervisorShow(ApiCommand, ShowOne):
    """Show one hypervisor, by id or hostname."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('hypervisor', help="Hypervisor id or hostname "
                                               "('godwit hypervisor list' shows them)")
        return parser

    def take_action(self, args):
        listed = self.client.get('/os-hypervisors')['hypervisors']
        match = next((h for h in listed if args.hypervisor in
                      (str(h['id']), h.get('hypervisor_hostname'))), None)
        if match is None:
            raise ClientError(f'no hypervisor with id or hostname {args.hypervisor}; '
                              "'godwit hypervisor list' shows them")
        hypervisor = dict(self.client.get(
            f"/os-hypervisors/{seg(match['id'])}")['hypervisor'])
        # The service it belongs to is a nested object; flatten it into rows.
        for key, value in (hypervisor.pop('service', None) or {}).items():
            hypervisor[f'service_{key}'] = value
        fields = sorted(hypervisor)
        return fields, pick(hypervisor, fields)
