"""``godwit migration timeline <server> <migration>``: what happened to a move,
and when, as a table with times relative to its start (the Godwit extension
GET /servers/{id}/migrations/{mid}/timeline, docs/api.md)."""

import datetime

from cliff.lister import Lister

from api.client.common import ApiCommand, seg


def _when(value):
    return datetime.datetime.fromisoformat(value) if value else None


def _what(entry):
    """The entry's detail in a few words."""
    d = entry.get('detail') or {}
    kind = entry['kind']
    if kind == 'phase':
        text = f"from {d['from']} ({d.get('event')})" if d.get('from') else 'recorded'
        return text + (f": {d['reason']}" if d.get('reason') else '')
    if kind in ('step', 'cleanup'):
        return d.get('outcome', '')
    if kind == 'progress':
        parts = [f"{d['progress']}%"] if d.get('progress') is not None else []
        if d.get('memory_remaining') is not None:
            parts.append(f"{d['memory_remaining'] / 2 ** 20:.0f} MiB left")
        return ', '.join(parts)
    # tuning, intent: what was set, without empty values and clock readings.
    return ', '.join(f'{k}={v}' for k, v in sorted(d.items())
                     if v is not None and not k.endswith('_at'))


class MigrationTimeline(ApiCommand, Lister):
    """Show a migration's timeline: each phase, host step (host, duration,
    outcome), intent, tuning change and progress sample, with the time since
    the migration was recorded."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', help='Server id')
        parser.add_argument('migration', help='Migration id or uuid')
        parser.add_argument('--absolute', action='store_true',
                            help='Show UTC times instead of times since the start')
        return parser

    def take_action(self, args):
        body = self.client.get(
            f'/servers/{seg(args.server)}/migrations/{seg(args.migration)}/timeline')
        entries = body['timeline']
        start = _when(entries[0]['at']) if entries else None
        rows = []
        for e in entries:
            at = e['at'] if args.absolute else \
                f"+{(_when(e['at']) - start).total_seconds():.3f}s"
            took = '' if e['duration_ms'] is None else f"{e['duration_ms']} ms"
            rows.append((at, e['kind'], e['name'], e['host'] or '', took, _what(e)))
        return ('When', 'Kind', 'What', 'Host', 'Took', 'Detail'), rows
