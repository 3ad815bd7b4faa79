"""``godwit server ...``: servers, their power and their recorded actions."""

from cliff.columns import FormattableColumn
from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from api.client import common
from api.client.common import ApiCommand, NoOutputUnlessWaited, add_wait, params, pick, poll, seg
from api.client.http import ClientError

SERVER_FIELDS = (
    'id', 'name', 'status', 'OS-EXT-STS:task_state', 'OS-EXT-STS:vm_state',
    'OS-EXT-STS:power_state', 'OS-EXT-SRV-ATTR:host',
    'OS-EXT-SRV-ATTR:hypervisor_hostname', 'flavor', 'created', 'updated', 'progress',
)

# Nova reports power_state as the libvirt-style integer; show its name.
POWER_STATES = {0: 'NOSTATE', 1: 'Running', 3: 'Paused', 4: 'Shutdown',
                6: 'Crashed', 7: 'Suspended'}


def flavor_name(server):
    # Since 2.47 the server embeds the flavor (original_name); before, only its id.
    flavor = server.get('flavor') or {}
    return flavor.get('original_name') or flavor.get('id')


def server_show(server):
    data = {field: server.get(field) for field in SERVER_FIELDS}
    data['flavor'] = flavor_name(server)
    power = data['OS-EXT-STS:power_state']
    data['OS-EXT-STS:power_state'] = POWER_STATES.get(power, power)
    fault = server.get('fault')
    if fault:
        data['fault'] = f"{fault.get('message')} (code {fault.get('code')})"
    return tuple(data), tuple(data.values())


def wait_for_server(client, server_id, statuses, timeout, what):
    """Poll until the server is idle in one of ``statuses`` or in ERROR."""
    path = f'/servers/{seg(server_id)}'
    return poll(lambda: client.get(path)['server'],
                lambda s: s.get('status') == 'ERROR' or (
                    s.get('status') in statuses and not s.get('OS-EXT-STS:task_state')),
                timeout, f'server {server_id} {what}')


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
        query = params(host=args.host, status=args.status,
                       all_tenants=1 if args.all_projects else None)
        servers = self.client.get('/servers/detail', params=query)['servers']
        columns = ('ID', 'Name', 'Status', 'Task State', 'Host', 'Flavor')
        rows = [(s['id'], s.get('name'), s.get('status'), s.get('OS-EXT-STS:task_state'),
                 s.get('OS-EXT-SRV-ATTR:host'), flavor_name(s)) for s in servers]
        return columns, rows


class ServerShow(ApiCommand, ShowOne):
    """Show one server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        return parser

    def take_action(self, args):
        return server_show(self.client.get(f'/servers/{seg(args.server)}')['server'])


class ServerCreate(ApiCommand, ShowOne):
    """Boot a server (no image or network needed by the fake driver)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', help='Server name')
        parser.add_argument('--flavor', required=True, help='Flavor id')
        parser.add_argument('--host', help='Force the server onto this compute host')
        add_wait(parser, 'the server is ACTIVE or ERROR')
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
        server = wait_for_server(self.client, server_id, ('ACTIVE',), args.timeout,
                                 'to become ACTIVE')
        if server['status'] == 'ERROR':
            self.exit_code = common.EXIT_ENDED_BADLY
        return server_show(server)


class ServerDelete(ApiCommand, Command):
    """Delete a server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        add_wait(parser, 'the server is gone')
        return parser

    def take_action(self, args):
        path = f'/servers/{seg(args.server)}'
        self.client.delete(path)
        if args.wait:
            poll(lambda: self._exists(path), lambda exists: not exists,
                 args.timeout, f'server {args.server} to be deleted')

    def _exists(self, path):
        try:
            self.client.get(path)
        except ClientError as exc:
            if exc.code == 404:
                return False
            raise
        return True


class _PowerAction(NoOutputUnlessWaited, ApiCommand, ShowOne):
    """A server action that changes the power state; with --wait, shows the server."""

    #: (the action's body, the status it ends in, what --wait waits for)
    body = None
    ends_in = 'ACTIVE'
    waits_for = ''

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        add_wait(parser, self.waits_for)
        return parser

    def action_body(self, args):
        return self.body

    def take_action(self, args):
        self.client.post(f'/servers/{seg(args.server)}/action', self.action_body(args))
        if not args.wait:
            return (), ()
        server = wait_for_server(self.client, args.server, (self.ends_in,), args.timeout,
                                 f'to become {self.ends_in}')
        if server['status'] == 'ERROR':
            self.exit_code = common.EXIT_ENDED_BADLY
        return server_show(server)


class ServerStop(_PowerAction):
    """Power a server off (os-stop)."""

    body = {'os-stop': None}
    ends_in = 'SHUTOFF'
    waits_for = 'the server is SHUTOFF'


class ServerStart(_PowerAction):
    """Power a stopped server on (os-start)."""

    body = {'os-start': None}
    waits_for = 'the server is ACTIVE'


class ServerReboot(_PowerAction):
    """Reboot a server: soft (the guest's own reboot) unless --hard."""

    waits_for = 'the server is ACTIVE again'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--hard', action='store_true',
                            help='Power-cycle the guest; also works on a SHUTOFF server '
                                 'or one in ERROR')
        return parser

    def action_body(self, args):
        return {'reboot': {'type': 'HARD' if args.hard else 'SOFT'}}


class ServerEventList(ApiCommand, Lister):
    """List the actions taken on a server; --long lists each action's events."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('--long', action='store_true',
                            help='One row per event of every action')
        return parser

    def take_action(self, args):
        base = f'/servers/{seg(args.server)}/os-instance-actions'
        actions = self.client.get(base)['instanceActions']
        if not args.long:
            columns = ('Request ID', 'Action', 'Start Time', 'Message')
            fields = ('request_id', 'action', 'start_time', 'message')
            return columns, [pick(a, fields) for a in actions]

        columns = ('Request ID', 'Action', 'Event', 'Start Time', 'Finish Time',
                   'Result', 'Host', 'Traceback')
        fields = ('event', 'start_time', 'finish_time', 'result', 'host', 'traceback')
        rows = []
        for action in actions:
            detail = self.client.get(f"{base}/{seg(action['request_id'])}")['instanceAction']
            # An action with no events yet still gets a row, so it is not hidden.
            for event in detail.get('events') or [{}]:
                rows.append((action['request_id'], action.get('action'))
                            + pick(event, fields))
        return columns, rows


class EventsColumn(FormattableColumn):
    """An action's events: one line each in a table, the list itself in JSON/YAML."""

    def human_readable(self):
        lines = []
        for e in self._value or []:
            line = (f"{e.get('event')}: {e.get('result')} on {e.get('host') or '-'} "
                    f"({e.get('start_time')} .. {e.get('finish_time')})")
            lines.append(line)
            if e.get('traceback'):
                lines.append('  ' + e['traceback'].strip().splitlines()[-1])
        return '\n'.join(lines)

    def machine_readable(self):
        return list(self._value or [])


class ServerEventShow(ApiCommand, ShowOne):
    """Show one action taken on a server (by request id) with its events."""

    FIELDS = ('request_id', 'action', 'instance_uuid', 'user_id', 'project_id',
              'start_time', 'updated_at', 'message')

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('request_id', metavar='request-id',
                            help="The action's request id ('server event list' shows them)")
        return parser

    def take_action(self, args):
        path = f'/servers/{seg(args.server)}/os-instance-actions/{seg(args.request_id)}'
        action = self.client.get(path)['instanceAction']
        fields = [f for f in self.FIELDS if f in action]
        values = list(pick(action, fields))
        if 'events' in action:  # only for those allowed to see them
            fields.append('events')
            values.append(EventsColumn(action['events']))
        return tuple(fields), tuple(values)
