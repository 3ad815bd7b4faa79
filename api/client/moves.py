"""Moves: live migration, cold migration, resize and its confirm/revert, and the
migration records (``godwit server live-migrate|migrate|resize...``,
``godwit live-migration ...``, ``godwit migration ...``).

With --wait every move is followed to its end with a progress line on stderr
(api.client.progress); stdout gets the migration record, as -f asks.
"""

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from api.client import common, progress
from api.client.common import ApiCommand, NoOutputUnlessWaited, add_wait, params, pick, seg

MIGRATION_FIELDS = ('id', 'uuid', 'status', 'source_compute', 'dest_compute',
                    'created_at', 'updated_at')
MIGRATION_TYPES = ('live-migration', 'migration', 'resize', 'evacuation')


def _migration_show(migration):
    fields = MIGRATION_FIELDS
    if migration.get('error_message'):
        fields += ('error_message',)
    return fields, pick(migration, fields)


class _Move(NoOutputUnlessWaited, ApiCommand, ShowOne):
    """A move of one server. Subclasses say how to ask for it (``request``),
    which migration records are its kind (``migration_type``) and what ends it
    (``move``)."""

    move = None
    migration_type = None
    waits_for = 'the move ends'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        self.add_arguments(parser)
        add_wait(parser, f'{self.waits_for}, showing its progress on stderr')
        return parser

    def add_arguments(self, parser):
        pass

    def request(self, args):
        raise NotImplementedError

    def take_action(self, args):
        if args.wait:
            # The server may have moved before; remember those records so an
            # old one that ended is not mistaken for this one.
            seen = {m['id'] for m in self._migrations(args.server)}
        self.request(args)
        if not args.wait:
            return (), ()
        return self._follow(
            args, lambda: next((m for m in self._migrations(args.server)
                                if m['id'] not in seen), None))

    def _migrations(self, server_id):
        # Newest first, as Nova sorts os-migrations by created_at/id descending.
        query = params(instance_uuid=server_id, migration_type=self.migration_type)
        return self.client.get('/os-migrations', params=query)['migrations']

    def _follow(self, args, find):
        follower = progress.MoveFollower(self.client, args.server, self.move, find,
                                         self.app.stderr)
        migration, succeeded = follower.follow(args.timeout)
        if not succeeded:
            self.exit_code = common.EXIT_ENDED_BADLY
        return _migration_show(migration)

    def _action(self, server_id, body):
        self.client.post(f'/servers/{seg(server_id)}/action', body)


class ServerLiveMigrate(_Move):
    """Live-migrate a server; with --wait, follow it and show the migration."""

    move = progress.LIVE_MIGRATION
    migration_type = 'live-migration'

    def add_arguments(self, parser):
        parser.add_argument('--host', help='Destination host (default: let the scheduler pick)')
        block = parser.add_mutually_exclusive_group()
        block.add_argument('--block-migration', dest='block_migration',
                           action='store_const', const=True, default='auto',
                           help='Copy local disks to the destination')
        block.add_argument('--no-block-migration', dest='block_migration',
                           action='store_const', const=False,
                           help='Disks are on shared storage; do not copy them')

        parser.add_argument('--dry-run', action='store_true',
                            help='Run every check against every candidate host (or '
                                 '--host) and predict each move; change nothing')

    def request(self, args):
        self._action(args.server, {'os-migrateLive': {
            'host': args.host, 'block_migration': args.block_migration}})

    def take_action(self, args):
        if not args.dry_run:
            return super().take_action(args)
        if args.wait:
            raise common.ClientError('--dry-run moves nothing, so there is nothing to '
                                     '--wait for; leave one of them out')
        result = self.client.post(f'/servers/{seg(args.server)}/live-migration-dry-run',
                                  {'host': args.host,
                                   'block_migration': args.block_migration})['dry_run']
        self._dry_run = result
        return ('Host', 'Accepted', 'Storage', 'Duration', 'Downtime', 'Reason'), [
            _dry_run_row(h) for h in result['hosts']]

    def produce_output(self, parsed_args, column_names, data):
        if not getattr(parsed_args, 'dry_run', False):
            return super().produce_output(parsed_args, column_names, data)
        # A table of hosts (a list), under what the prediction is based on.
        r = self._dry_run
        est = r.get('estimate') or {}
        basis = (f"bandwidth {est.get('bandwidth_mb_s') or 'unlimited'} MiB/s, dirty rate "
                 f"{est.get('dirty_rate_mb_s')} MiB/s ({est.get('basis')})" if est
                 else f"no prediction: {r.get('no_estimate_because')}")
        self.app.stderr.write(f"{r['server']} on {r['source']}: {r['memory_mb']} MiB, "
                              f"downtime up to {r['max_downtime_ms']} ms; {basis}\n")
        self.formatter.emit_list(column_names, data, self.app.stdout, parsed_args)
        if not any(h['accepted'] for h in r['hosts']):
            # As the real request would be refused: exit 1.
            self.exit_code = common.EXIT_API_ERROR
        return 0


def _dry_run_row(host):
    p = host.get('prediction')
    if not host['accepted']:
        duration = downtime = ''
    elif p is None:
        duration = downtime = 'unknown'
    elif not p['converges']:
        duration, downtime = 'never converges', ''
    else:
        duration, downtime = f"{p['duration_s']:.1f} s", f"{p['downtime_ms']:.0f} ms"
    return (host['host'], 'yes' if host['accepted'] else 'no', host['storage'] or '',
            duration, downtime, host['reason'] or '')


class ServerMigrate(_Move):
    """Cold-migrate a server (it is powered off and copied); confirm or revert after."""

    move = progress.COLD_MOVE
    migration_type = 'migration'
    waits_for = 'the server runs on the destination (VERIFY_RESIZE) or the move failed'

    def add_arguments(self, parser):
        parser.add_argument('--host', help='Destination host (default: let the scheduler pick)')

    def request(self, args):
        self._action(args.server, {'migrate': {'host': args.host} if args.host else None})


class ServerResize(_Move):
    """Resize a server to another flavor (a cold move); confirm or revert after."""

    move = progress.COLD_MOVE
    migration_type = 'resize'
    waits_for = 'the resized server runs (VERIFY_RESIZE) or the resize failed'

    def add_arguments(self, parser):
        parser.add_argument('flavor', help="Flavor id ('godwit flavor list' shows them)")

    def request(self, args):
        self._action(args.server, {'resize': {'flavorRef': args.flavor}})


class _ResizeDecision(_Move):
    """Confirm or revert the server's finished cold migration or resize."""

    action = None

    def take_action(self, args):
        waiting = None
        if args.wait:
            # The one record a decision applies to: the server's finished move
            # (the API refuses the decision if there is none).
            finished = self.client.get('/os-migrations', params={
                'instance_uuid': args.server, 'status': 'finished'})['migrations']
            waiting = finished[0]['id'] if finished else None
        self._action(args.server, {self.action: None})
        if not args.wait:
            return (), ()
        return self._follow(args, lambda: self._migration(args.server, waiting))

    def _migration(self, server_id, migration_id):
        return next((m for m in self.client.get('/os-migrations', params={
            'instance_uuid': server_id})['migrations'] if m['id'] == migration_id), None)


class ServerResizeConfirm(_ResizeDecision):
    """Confirm a server in VERIFY_RESIZE: its copy on the source is removed."""

    action = 'confirmResize'
    move = progress.RESIZE_CONFIRM
    waits_for = 'the source is cleaned (confirmed)'


class ServerResizeRevert(_ResizeDecision):
    """Revert a server in VERIFY_RESIZE: it goes back to its source and old flavor."""

    action = 'revertResize'
    move = progress.RESIZE_REVERT
    waits_for = 'the server runs on its source again (reverted)'


class _LiveMigrationControl(ApiCommand, Command):
    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('migration',
                            help="Migration id or uuid ('godwit migration list --instance "
                                 "<server>' shows it)")
        return parser

    def path(self, args):
        return f'/servers/{seg(args.server)}/migrations/{seg(args.migration)}'


class LiveMigrationAbort(_LiveMigrationControl):
    """Abort a queued, preparing or running live migration; the guest stays on its source.

    The abort is asked for and done by the source host; `godwit migration list
    --instance <server>` then shows the migration cancelled.
    """

    def take_action(self, args):
        self.client.delete(self.path(args))


class LiveMigrationForceComplete(_LiveMigrationControl):
    """Make a running live migration finish now.

    The source pauses the guest, or switches to post-copy where the host
    permits it ([libvirt] live_migration_permit_post_copy).
    """

    def take_action(self, args):
        self.client.post(self.path(args) + '/action', {'force_complete': None})


class _LiveMigrationTune(_LiveMigrationControl):
    """set-speed and set-downtime: ask (the API records it and answers at once),
    and with --wait follow the timeline until the source applied it."""

    action = None       # the body's key
    key = None          # its value's key
    metavar = None
    what = None

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('value', type=int, metavar=self.metavar, help=self.what)
        add_wait(parser, 'the source host applied it')
        return parser

    def take_action(self, args):
        path = self.path(args)
        before = len(self._applied(path)) if args.wait else 0
        self.client.post(path + '/action', {self.action: {self.key: args.value}})
        if not args.wait:
            return
        entries = common.poll(lambda: self._applied(path)[before:], bool, args.timeout,
                              f'{self.action} of migration {args.migration} to be applied',
                              hint='; the conductor may still apply it: `godwit migration '
                                   f'timeline {args.server} {args.migration}` shows it')
        detail = entries[0].get('detail') or {}
        outcome = detail.get('outcome', '')
        if outcome == 'ok':
            self.app.stdout.write(f"{self.action}: applied on {entries[0].get('host')}\n")
        else:
            self.app.stderr.write(f'{self.action}: {outcome}\n')
            self.exit_code = common.EXIT_ENDED_BADLY

    def _applied(self, path):
        """The timeline's entries of user tuning the source applied (or could not)."""
        entries = self.client.get(path + '/timeline')['timeline']
        return [e for e in entries if e['kind'] == 'tuning' and e['name'] == 'user']


class LiveMigrationSetSpeed(_LiveMigrationTune):
    """Change a running live migration's bandwidth cap, in MiB/s (1 to 1048576).

    The API records it (a Godwit extension) and the conductor that drives the
    migration applies it on the source host; `godwit migration timeline` shows
    when, and --wait waits for it.
    """

    action, key, metavar = 'set-speed', 'mib_per_s', 'MiB/s'
    what = 'Bandwidth cap in MiB/s'


class LiveMigrationSetDowntime(_LiveMigrationTune):
    """Change a running live migration's maximum downtime, in ms (1 to 60000).

    From then on the source's monitor no longer raises the downtime step by step
    ([libvirt] live_migration_downtime_steps) nor on a stall; the timeline says so.
    """

    action, key, metavar = 'set-downtime', 'ms', 'ms'
    what = 'The longest pause allowed at the switch-over, in ms'


class MigrationList(ApiCommand, Lister):
    """List migrations of all servers, newest first."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Source or destination compute host')
        parser.add_argument('--source-compute', help='Source compute host')
        parser.add_argument('--status', help='Migration status (e.g. running, completed)')
        parser.add_argument('--instance', '--server', dest='instance', help='Server id')
        parser.add_argument('--type', choices=MIGRATION_TYPES, help='Migration type')
        parser.add_argument('--changes-since', metavar='TIME',
                            help='Only migrations updated at or after this ISO 8601 time')
        parser.add_argument('--changes-before', metavar='TIME',
                            help='Only migrations updated at or before this ISO 8601 time')
        parser.add_argument('--user', help='Only migrations of this user id')
        parser.add_argument('--project', help='Only migrations of this project id')
        parser.add_argument('--limit', type=int, help='Return at most this many')
        parser.add_argument('--marker', help='Migration uuid to page after')
        parser.add_argument('--long', action='store_true',
                            help='Also the flavors, user, project and error message')
        return parser

    def take_action(self, args):
        query = params(host=args.host, source_compute=args.source_compute,
                       status=args.status, instance_uuid=args.instance,
                       migration_type=args.type, limit=args.limit, marker=args.marker,
                       user_id=args.user, project_id=args.project,
                       **{'changes-since': args.changes_since,
                          'changes-before': args.changes_before})
        migrations = self.client.get('/os-migrations', params=query)['migrations']
        columns = ('Id', 'UUID', 'Instance', 'Type', 'Status', 'Source', 'Dest',
                   'Created', 'Updated')
        fields = ('id', 'uuid', 'instance_uuid', 'migration_type', 'status',
                  'source_compute', 'dest_compute', 'created_at', 'updated_at')
        if args.long:
            columns += ('Old Flavor', 'New Flavor', 'User', 'Project', 'Error')
            fields += ('old_instance_type_id', 'new_instance_type_id', 'user_id',
                       'project_id', 'error_message')
        return columns, [pick(m, fields) for m in migrations]


class MigrationShow(ApiCommand, ShowOne):
    """Show a live migration under way, with its progress counters."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('migration', help='Migration id or uuid')
        return parser

    def take_action(self, args):
        path = f'/servers/{seg(args.server)}/migrations/{seg(args.migration)}'
        migration = self.client.get(path)['migration']
        # Show every field the server returns: the set grows with the microversion.
        fields = sorted(migration)
        return fields, pick(migration, fields)
