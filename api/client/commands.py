"""cliff commands of the ``godwit`` CLI, one class per compute API call."""

import time
from urllib.parse import quote

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from api.client.http import ClientError

# Seconds between polls of --wait; module level so tests can shrink it.
POLL_INTERVAL = 0.2

LIVE_MIGRATION_DONE = ('completed', 'failed', 'error', 'cancelled')

SERVER_FIELDS = (
    'id', 'name', 'status', 'OS-EXT-STS:task_state', 'OS-EXT-STS:vm_state',
    'OS-EXT-STS:power_state', 'OS-EXT-SRV-ATTR:host',
    'OS-EXT-SRV-ATTR:hypervisor_hostname', 'flavor', 'created', 'updated', 'progress',
)
MIGRATION_FIELDS = ('id', 'uuid', 'status', 'source_compute', 'dest_compute',
                    'created_at', 'updated_at')

# Nova reports power_state as the libvirt-style integer; show its name.
POWER_STATES = {0: 'NOSTATE', 1: 'Running', 3: 'Paused', 4: 'Shutdown',
                6: 'Crashed', 7: 'Suspended'}


def _seg(value):
    """Quote one path segment so an odd id cannot change the URL's shape."""
    return quote(str(value), safe='')


def _params(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}


def _poll(fetch, done, timeout, what):
    """Call ``fetch`` until ``done(result)``; give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise ClientError(f'timed out after {timeout:g}s waiting for {what}')
        time.sleep(POLL_INTERVAL)


def _flavor_name(server):
    # Since 2.47 the server embeds the flavor (original_name); before, only its id.
    flavor = server.get('flavor') or {}
    return flavor.get('original_name') or flavor.get('id')


def _server_show(server):
    data = {field: server.get(field) for field in SERVER_FIELDS}
    data['flavor'] = _flavor_name(server)
    power = data['OS-EXT-STS:power_state']
    data['OS-EXT-STS:power_state'] = POWER_STATES.get(power, power)
    fault = server.get('fault')
    if fault:
        data['fault'] = f"{fault.get('message')} (code {fault.get('code')})"
    return tuple(data), tuple(data.values())


def _pick(item, fields):
    return tuple(item.get(f) for f in fields)


def _add_wait(parser, what):
    parser.add_argument('--wait', action='store_true', help=f'Wait until {what}')
    parser.add_argument('--timeout', type=float, default=60, metavar='SECONDS',
                        help='How long --wait waits (default %(default)s)')


class ApiCommand:
    """Mixin for every command: API failures become one line and exit code 1.

    Commands that finish but must still report failure (a --wait that ends in
    ERROR) set ``exit_code`` after producing their output.
    """

    exit_code = 0

    @property
    def client(self):
        return self.app.client

    def run(self, parsed_args):
        try:
            return super().run(parsed_args) or self.exit_code
        except ClientError as exc:
            self.app.stderr.write(f'{exc}\n')
            return 1


class ServerList(ApiCommand, Lister):
    """List servers."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only servers on this compute host')
        parser.add_argument('--status', help='Only servers in this status (e.g. ACTIVE)')
        parser.add_argument('--all-projects', action='store_true',
                            help='Include servers of every project')
        return parser

    def take_action(self, args):
        params = _params(host=args.host, status=args.status,
                         all_tenants=1 if args.all_projects else None)
        servers = self.client.get('/servers/detail', params=params)['servers']
        columns = ('ID', 'Name', 'Status', 'Task State', 'Host', 'Flavor')
        rows = [(s['id'], s.get('name'), s.get('status'), s.get('OS-EXT-STS:task_state'),
                 s.get('OS-EXT-SRV-ATTR:host'), _flavor_name(s)) for s in servers]
        return columns, rows


class ServerShow(ApiCommand, ShowOne):
    """Show one server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        return parser

    def take_action(self, args):
        return _server_show(self.client.get(f'/servers/{_seg(args.server)}')['server'])


class ServerCreate(ApiCommand, ShowOne):
    """Boot a server (no image or network needed by the fake driver)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', help='Server name')
        parser.add_argument('--flavor', required=True, help='Flavor id')
        parser.add_argument('--host', help='Force the server onto this compute host')
        _add_wait(parser, 'the server is ACTIVE or ERROR')
        return parser

    def take_action(self, args):
        body = {'name': args.name, 'flavorRef': args.flavor, 'imageRef': '',
                'networks': 'auto'}
        if args.host:
            # Nova's admin-only "zone:host" form pins the host, skipping the scheduler.
            body['availability_zone'] = f'nova:{args.host}'
        server_id = self.client.post('/servers', {'server': body})['server']['id']
        if not args.wait:
            return ('id',), (server_id,)
        path = f'/servers/{_seg(server_id)}'
        server = _poll(lambda: self.client.get(path)['server'],
                       lambda s: s.get('status') in ('ACTIVE', 'ERROR'),
                       args.timeout, f'server {server_id} to become ACTIVE')
        if server['status'] == 'ERROR':
            self.exit_code = 1
        return _server_show(server)


class ServerDelete(ApiCommand, Command):
    """Delete a server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        _add_wait(parser, 'the server is gone')
        return parser

    def take_action(self, args):
        path = f'/servers/{_seg(args.server)}'
        self.client.delete(path)
        if args.wait:
            _poll(lambda: self._exists(path), lambda exists: not exists,
                  args.timeout, f'server {args.server} to be deleted')

    def _exists(self, path):
        try:
            self.client.get(path)
        except ClientError as exc:
            if exc.code == 404:
                return False
            raise
        return True


class ServerLiveMigrate(ApiCommand, ShowOne):
    """Live-migrate a server; with --wait, show the resulting migration."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('--host', help='Destination host (default: let the scheduler pick)')
        block = parser.add_mutually_exclusive_group()
        block.add_argument('--block-migration', dest='block_migration',
                           action='store_const', const=True, default='auto',
                           help='Copy local disks to the destination')
        block.add_argument('--no-block-migration', dest='block_migration',
                           action='store_const', const=False,
                           help='Disks are on shared storage; do not copy them')
        _add_wait(parser, 'the migration finishes')
        return parser

    def take_action(self, args):
        server = _seg(args.server)
        if args.wait:
            # The server may have been live-migrated before; remember those
            # records so an old "completed" one is not mistaken for this one.
            seen = {m['id'] for m in self._migrations(args.server)}
        self.client.post(f'/servers/{server}/action', {
            'os-migrateLive': {'host': args.host, 'block_migration': args.block_migration}})
        if not args.wait:
            return (), ()
        migration = _poll(
            lambda: next((m for m in self._migrations(args.server) if m['id'] not in seen),
                         None),
            lambda m: m is not None and m.get('status') in LIVE_MIGRATION_DONE,
            args.timeout, f'live migration of server {args.server}')
        if migration['status'] != 'completed':
            self.exit_code = 1
        return MIGRATION_FIELDS, _pick(migration, MIGRATION_FIELDS)

    def _migrations(self, server_id):
        # Newest first, as Nova sorts os-migrations by created_at/id descending.
        params = {'instance_uuid': server_id, 'migration_type': 'live-migration'}
        return self.client.get('/os-migrations', params=params)['migrations']

    def produce_output(self, parsed_args, column_names, data):
        if column_names:  # nothing to show when not waiting
            return super().produce_output(parsed_args, column_names, data)
        return 0


class MigrationList(ApiCommand, Lister):
    """List migrations of all servers."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Source or destination compute host')
        parser.add_argument('--status', help='Migration status (e.g. running, completed)')
        parser.add_argument('--instance', help='Server id')
        parser.add_argument('--type', help='live-migration, migration, resize or evacuation')
        parser.add_argument('--limit', type=int, help='Return at most this many')
        parser.add_argument('--marker', help='Migration uuid to page after')
        return parser

    def take_action(self, args):
        params = _params(host=args.host, status=args.status, instance_uuid=args.instance,
                         migration_type=args.type, limit=args.limit, marker=args.marker)
        migrations = self.client.get('/os-migrations', params=params)['migrations']
        columns = ('Id', 'UUID', 'Instance', 'Type', 'Status', 'Source', 'Dest',
                   'Created', 'Updated')
        fields = ('id', 'uuid', 'instance_uuid', 'migration_type', 'status',
                  'source_compute', 'dest_compute', 'created_at', 'updated_at')
        return columns, [_pick(m, fields) for m in migrations]


class MigrationShow(ApiCommand, ShowOne):
    """Show one migration of a server, with its progress counters."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('migration', help='Migration id')
        return parser

    def take_action(self, args):
        path = f'/servers/{_seg(args.server)}/migrations/{_seg(args.migration)}'
        migration = self.client.get(path)['migration']
        # Show every field the server returns: the set grows with the microversion.
        fields = sorted(migration)
        return fields, _pick(migration, fields)


class FlavorList(ApiCommand, Lister):
    """List flavors."""

    def take_action(self, args):
        flavors = self.client.get('/flavors/detail')['flavors']
        columns = ('ID', 'Name', 'RAM', 'vCPUs', 'Disk')
        return columns, [_pick(f, ('id', 'name', 'ram', 'vcpus', 'disk')) for f in flavors]


class ServiceList(ApiCommand, Lister):
    """List compute services and whether they are up."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only services on this host')
        parser.add_argument('--binary', help='Only this binary (e.g. godwit-compute)')
        return parser

    def take_action(self, args):
        params = _params(host=args.host, binary=args.binary)
        services = self.client.get('/os-services', params=params)['services']
        columns = ('ID', 'Binary', 'Host', 'Zone', 'Status', 'State', 'Updated At',
                   'Disabled Reason')
        fields = ('id', 'binary', 'host', 'zone', 'status', 'state', 'updated_at',
                  'disabled_reason')
        return columns, [_pick(s, fields) for s in services]


class HypervisorList(ApiCommand, Lister):
    """List hypervisors with their capacity and usage."""

    def take_action(self, args):
        hypervisors = self.client.get('/os-hypervisors/detail')['hypervisors']
        columns = ('ID', 'Hypervisor Hostname', 'Type', 'State', 'Status', 'vCPUs',
                   'vCPUs Used', 'Memory MB', 'Memory MB Used', 'Running VMs')
        fields = ('id', 'hypervisor_hostname', 'hypervisor_type', 'state', 'status',
                  'vcpus', 'vcpus_used', 'memory_mb', 'memory_mb_used', 'running_vms')
        return columns, [_pick(h, fields) for h in hypervisors]


class ServerEventList(ApiCommand, Lister):
    """List the actions taken on a server; --long lists each action's events."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('--long', action='store_true',
                            help='One row per event of every action')
        return parser

    def take_action(self, args):
        base = f'/servers/{_seg(args.server)}/os-instance-actions'
        actions = self.client.get(base)['instanceActions']
        if not args.long:
            columns = ('Request ID', 'Action', 'Start Time', 'Message')
            fields = ('request_id', 'action', 'start_time', 'message')
            return columns, [_pick(a, fields) for a in actions]

        columns = ('Request ID', 'Action', 'Event', 'Start Time', 'Finish Time',
                   'Result', 'Host', 'Traceback')
        fields = ('event', 'start_time', 'finish_time', 'result', 'host', 'traceback')
        rows = []
        for action in actions:
            detail = self.client.get(f"{base}/{_seg(action['request_id'])}")['instanceAction']
            # An action with no events yet still gets a row, so it is not hidden.
            for event in detail.get('events') or [{}]:
                rows.append((action['request_id'], action.get('action'))
                            + _pick(event, fields))
        return columns, rows
