"""Tests of the ``godwit`` CLI against a fake compute API in a thread.

The fake records every request and answers from canned Nova-shaped
responses, so the tests check the exact HTTP calls and the printed output.
"""

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from api.client import common, shell

SERVER_ID = '8c5b1d2e-0f4a-4a57-9d7e-1f2a3b4c5d6e'


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # lower-cased names
    body: object


class FakeNova:
    def __init__(self):
        self.requests = []
        self._routes = {}
        self.url = None

    def add(self, method, path, *responses):
        """Answer ``method path`` with ``(status, body)`` responses in turn.

        The last response repeats, which is what polling tests need.
        """
        self._routes[(method, '/v2.1' + path)] = list(responses)

    def respond(self, method, path):
        responses = self._routes.get((method, path))
        if not responses:
            # A visible failure instead of a hang when a test forgot a route.
            return 404, {'itemNotFound': {'code': 404, 'message': f'no route {method} {path}'}}
        return responses.pop(0) if len(responses) > 1 else responses[0]

    def calls(self):
        return [(r.method, r.path) for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    def _handle(self):
        fake = self.server.fake
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        fake.requests.append(Request(
            self.command, url.path, dict(parse_qsl(url.query)),
            {k.lower(): v for k, v in self.headers.items()},
            json.loads(raw) if raw else None))
        status, body = fake.respond(self.command, url.path)
        if body is None:
            payload, ctype = b'', 'application/json'
        elif isinstance(body, str):
            payload, ctype = body.encode(), 'text/plain'
        else:
            payload, ctype = json.dumps(body).encode(), 'application/json'
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, *args):
        pass  # keep pytest output free of access logs


@pytest.fixture
def nova():
    fake = FakeNova()
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.fake = fake
    fake.url = f'http://127.0.0.1:{server.server_port}/v2.1'
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def godwit(nova, monkeypatch):
    """Run the CLI in-process against the fake; returns main()'s exit code."""
    for var in ('GODWIT_USER', 'GODWIT_PROJECT', 'GODWIT_COMPUTE_API_VERSION'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('GODWIT_ENDPOINT', nova.url)
    monkeypatch.setattr(common, 'POLL_INTERVAL', 0)
    return lambda *argv: shell.main(list(argv))


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def _server(**overrides):
    server = {
        'id': SERVER_ID, 'name': 'vm1', 'status': 'ACTIVE',
        'OS-EXT-STS:task_state': None, 'OS-EXT-STS:vm_state': 'active',
        'OS-EXT-STS:power_state': 1, 'OS-EXT-SRV-ATTR:host': 'h1',
        'OS-EXT-SRV-ATTR:hypervisor_hostname': 'h1.node',
        'flavor': {'original_name': 'm1.small', 'vcpus': 1, 'ram': 512, 'disk': 1},
        'created': '2024-01-01T00:00:00Z', 'updated': '2024-01-01T00:01:00Z',
        'progress': 0,
    }
    server.update(overrides)
    return server


def _migration(mid, status, **overrides):
    migration = {
        'id': mid, 'uuid': f'mig-{mid}', 'instance_uuid': SERVER_ID,
        'migration_type': 'live-migration', 'status': status,
        'source_compute': 'h1', 'dest_compute': 'h2',
        'created_at': '2024-01-01T00:00:00.000000', 'updated_at': None,
    }
    migration.update(overrides)
    return migration


# -- request plumbing -------------------------------------------------------

def test_default_headers_identify_admin_and_microversion(nova, godwit):
    nova.add('GET', '/servers/detail', (200, {'servers': []}))

    assert godwit('server', 'list') == 0

    (req,) = nova.requests
    assert (req.method, req.path, req.query) == ('GET', '/v2.1/servers/detail', {})
    assert req.headers['x-auth-token'] == 'admin:admin'
    assert req.headers['openstack-api-version'] == 'compute 2.80'
    assert req.headers['x-openstack-nova-api-version'] == '2.80'


def test_identity_and_microversion_come_from_env_and_options(nova, godwit, monkeypatch):
    monkeypatch.setenv('GODWIT_USER', 'alice')
    monkeypatch.setenv('GODWIT_COMPUTE_API_VERSION', '2.59')
    nova.add('GET', '/flavors/detail', (200, {'flavors': []}))

    assert godwit('--os-project', 'p1', 'flavor', 'list') == 0

    headers = nova.requests[0].headers
    assert headers['x-auth-token'] == 'alice:p1'
    assert headers['openstack-api-version'] == 'compute 2.59'
    assert headers['x-openstack-nova-api-version'] == '2.59'


def test_api_error_prints_nova_message_and_fails(nova, godwit, capsys):
    nova.add('POST', f'/servers/{SERVER_ID}/action',
             (409, {'conflictingRequest': {'code': 409, 'message': 'busy'}}))

    assert godwit('server', 'live-migrate', SERVER_ID) != 0

    assert capsys.readouterr().err == 'ERROR (409): busy\n'


def test_non_nova_error_body_falls_back_to_text(nova, godwit, capsys):
    nova.add('GET', '/os-services', (502, 'bad gateway'))

    assert godwit('service', 'list') == 1

    assert capsys.readouterr().err == 'ERROR (502): bad gateway\n'


def test_connection_refused_names_endpoint(godwit, capsys):
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    endpoint = f'http://127.0.0.1:{port}/v2.1'

    assert godwit('--os-endpoint', endpoint, 'server', 'list') == 1

    err = capsys.readouterr().err
    assert endpoint in err
    assert 'connection refused' in err
    assert 'godwit-api (or godwit-all)' in err


# -- servers ------------------------------------------------------------------

def test_server_list_filters_and_columns(nova, godwit, capsys):
    old_style = _server(id='s2', name='vm2', status='MIGRATING',
                        **{'OS-EXT-STS:task_state': 'migrating', 'flavor': {'id': '42'}})
    nova.add('GET', '/servers/detail', (200, {'servers': [_server(), old_style]}))

    assert godwit('server', 'list', '--host', 'h1', '--status', 'ACTIVE',
                  '--all-projects', '-f', 'json') == 0

    assert nova.requests[0].query == {'host': 'h1', 'status': 'ACTIVE', 'all_tenants': '1'}
    assert _json_out(capsys) == [
        {'ID': SERVER_ID, 'Name': 'vm1', 'Status': 'ACTIVE', 'Task State': None,
         'Host': 'h1', 'Flavor': 'm1.small'},
        {'ID': 's2', 'Name': 'vm2', 'Status': 'MIGRATING', 'Task State': 'migrating',
         'Host': 'h1', 'Flavor': '42'},
    ]


def test_server_show_fields(nova, godwit, capsys):
    fault = {'code': 500, 'message': 'No valid host was found.'}
    nova.add('GET', f'/servers/{SERVER_ID}', (200, {'server': _server(fault=fault)}))

    assert godwit('server', 'show', SERVER_ID, '-f', 'json') == 0

    assert nova.calls() == [('GET', f'/v2.1/servers/{SERVER_ID}')]
    assert _json_out(capsys) == {
        'id': SERVER_ID, 'name': 'vm1', 'status': 'ACTIVE',
        'OS-EXT-STS:task_state': None, 'OS-EXT-STS:vm_state': 'active',
        'OS-EXT-STS:power_state': 'Running', 'OS-EXT-SRV-ATTR:host': 'h1',
        'OS-EXT-SRV-ATTR:hypervisor_hostname': 'h1.node', 'flavor': 'm1.small',
        'created': '2024-01-01T00:00:00Z', 'updated': '2024-01-01T00:01:00Z',
        'progress': 0, 'fault': 'No valid host was found. (code 500)',
    }


def test_server_show_table_has_no_fault_row_without_fault(nova, godwit, capsys):
    nova.add('GET', f'/servers/{SERVER_ID}', (200, {'server': _server()}))

    assert godwit('server', 'show', SERVER_ID) == 0

    out = capsys.readouterr().out
    assert '| OS-EXT-SRV-ATTR:host ' in out and '| h1 ' in out
    assert 'fault' not in out


def test_server_show_missing_server(nova, godwit, capsys):
    nova.add('GET', '/servers/nope', (404, {'itemNotFound': {
        'code': 404, 'message': 'Instance nope could not be found.'}}))

    assert godwit('server', 'show', 'nope') == 1

    assert capsys.readouterr().err == 'ERROR (404): Instance nope could not be found.\n'


def test_server_create_on_host_sends_nova_body(nova, godwit, capsys):
    nova.add('POST', '/servers', (202, {'server': {'id': SERVER_ID, 'adminPass': 'x'}}))

    assert godwit('server', 'create', 'vm1', '--flavor', '1', '--host', 'h2',
                  '-f', 'value') == 0

    (req,) = nova.requests
    assert (req.method, req.path) == ('POST', '/v2.1/servers')
    assert req.body == {'server': {'name': 'vm1', 'flavorRef': '1', 'imageRef': '',
                                   'availability_zone': 'nova:h2', 'networks': 'auto'}}
    assert capsys.readouterr().out == f'{SERVER_ID}\n'


def test_server_create_without_host_leaves_zone_to_scheduler(nova, godwit):
    nova.add('POST', '/servers', (202, {'server': {'id': SERVER_ID}}))

    assert godwit('server', 'create', 'vm1', '--flavor', '1') == 0

    assert 'availability_zone' not in nova.requests[0].body['server']


def test_server_create_wait_polls_until_active(nova, godwit, capsys):
    nova.add('POST', '/servers', (202, {'server': {'id': SERVER_ID}}))
    nova.add('GET', f'/servers/{SERVER_ID}',
             (200, {'server': _server(status='BUILD')}),
             (200, {'server': _server(status='BUILD')}),
             (200, {'server': _server()}))

    assert godwit('server', 'create', 'vm1', '--flavor', '1', '--wait', '-f', 'json') == 0

    assert nova.calls() == [('POST', '/v2.1/servers')] + \
        [('GET', f'/v2.1/servers/{SERVER_ID}')] * 3
    assert _json_out(capsys)['status'] == 'ACTIVE'


def test_server_create_wait_ending_in_error_exits_3(nova, godwit, capsys):
    nova.add('POST', '/servers', (202, {'server': {'id': SERVER_ID}}))
    nova.add('GET', f'/servers/{SERVER_ID}', (200, {'server': _server(
        status='ERROR', fault={'code': 500, 'message': 'No valid host was found.'})}))

    assert godwit('server', 'create', 'vm1', '--flavor', '1', '--wait', '-f', 'json') == 3

    shown = _json_out(capsys)
    assert (shown['status'], shown['fault']) == ('ERROR', 'No valid host was found. (code 500)')


def test_server_create_wait_times_out_exits_4(nova, godwit, capsys):
    nova.add('POST', '/servers', (202, {'server': {'id': SERVER_ID}}))
    nova.add('GET', f'/servers/{SERVER_ID}', (200, {'server': _server(status='BUILD')}))

    assert godwit('server', 'create', 'vm1', '--flavor', '1', '--wait', '--timeout', '0') == 4

    assert capsys.readouterr().err == \
        f'ERROR: timed out after 0s waiting for server {SERVER_ID} to become ACTIVE\n'


def test_server_delete_without_wait_does_not_poll(nova, godwit):
    nova.add('DELETE', f'/servers/{SERVER_ID}', (204, None))

    assert godwit('server', 'delete', SERVER_ID) == 0

    assert nova.calls() == [('DELETE', f'/v2.1/servers/{SERVER_ID}')]


def test_server_delete_wait_polls_until_404(nova, godwit):
    nova.add('DELETE', f'/servers/{SERVER_ID}', (204, None))
    nova.add('GET', f'/servers/{SERVER_ID}',
             (200, {'server': _server(**{'OS-EXT-STS:task_state': 'deleting'})}),
             (404, {'itemNotFound': {'code': 404, 'message': 'gone'}}))

    assert godwit('server', 'delete', SERVER_ID, '--wait') == 0

    assert nova.calls() == [('DELETE', f'/v2.1/servers/{SERVER_ID}'),
                            ('GET', f'/v2.1/servers/{SERVER_ID}'),
                            ('GET', f'/v2.1/servers/{SERVER_ID}')]


# -- live migration -----------------------------------------------------------

def test_live_migrate_defaults_to_auto_block_migration(nova, godwit, capsys):
    nova.add('POST', f'/servers/{SERVER_ID}/action', (202, None))

    assert godwit('server', 'live-migrate', SERVER_ID, '--host', 'h2') == 0

    (req,) = nova.requests  # no polling without --wait
    assert (req.method, req.path) == ('POST', f'/v2.1/servers/{SERVER_ID}/action')
    assert req.body == {'os-migrateLive': {'host': 'h2', 'block_migration': 'auto'}}
    assert capsys.readouterr().out == ''


@pytest.mark.parametrize('flag, expected', [('--block-migration', True),
                                            ('--no-block-migration', False)])
def test_live_migrate_block_flags_without_host(nova, godwit, flag, expected):
    nova.add('POST', f'/servers/{SERVER_ID}/action', (202, None))

    assert godwit('server', 'live-migrate', SERVER_ID, flag) == 0

    assert nova.requests[0].body == {
        'os-migrateLive': {'host': None, 'block_migration': expected}}


def test_live_migrate_wait_follows_the_new_migration(nova, godwit, capsys):
    old = _migration(1, 'completed')
    nova.add('POST', f'/servers/{SERVER_ID}/action', (202, None))
    nova.add('GET', '/os-migrations',
             (200, {'migrations': [old]}),  # before the POST
             (200, {'migrations': [old]}),  # new record not visible yet
             (200, {'migrations': [_migration(2, 'running'), old]}),
             (200, {'migrations': [_migration(2, 'completed', updated_at='t2'), old]}))
    nova.add('GET', f'/servers/{SERVER_ID}/migrations/2', (200, {'migration': {
        'id': 2, 'status': 'running', 'memory_total_bytes': 1024,
        'memory_processed_bytes': 256, 'memory_remaining_bytes': 768,
        'updated_at': '2024-01-01T00:00:01.000000'}}))
    nova.add('GET', f'/servers/{SERVER_ID}/migrations/2/timeline', (200, {'timeline': [
        {'kind': 'tuning', 'name': 'monitor', 'detail': {'max_downtime_ms': 50}},
        {'kind': 'progress', 'name': 'sample',
         'detail': {'dirty_rate': 3 * 2 ** 20, 'max_downtime_ms': 75}}]}))

    assert godwit('server', 'live-migrate', SERVER_ID, '--wait', '-f', 'json') == 0

    # While it runs, its progress counters are read too, and its timeline for
    # the dirty rate and the max downtime (the newest entry's).
    listing = ('GET', '/v2.1/os-migrations')
    assert nova.calls() == [listing, ('POST', f'/v2.1/servers/{SERVER_ID}/action'),
                            listing, listing,
                            ('GET', f'/v2.1/servers/{SERVER_ID}/migrations/2'),
                            ('GET', f'/v2.1/servers/{SERVER_ID}/migrations/2/timeline'),
                            listing]
    out_before, err = capsys.readouterr()
    assert 'live-migration 2: running   25%  768 B left  dirty 3.0 MiB/s  max downtime ' \
        '75 ms  0s' in err, err
    for req in nova.requests:
        if req.path == '/v2.1/os-migrations':
            assert req.query == {'instance_uuid': SERVER_ID,
                                 'migration_type': 'live-migration'}
    assert json.loads(out_before) == {
        'id': 2, 'uuid': 'mig-2', 'status': 'completed', 'source_compute': 'h1',
        'dest_compute': 'h2', 'created_at': '2024-01-01T00:00:00.000000',
        'updated_at': 't2'}


@pytest.mark.parametrize('status', ['failed', 'error', 'cancelled'])
def test_live_migrate_wait_unsuccessful_exits_3(nova, godwit, capsys, status):
    nova.add('POST', f'/servers/{SERVER_ID}/action', (202, None))
    nova.add('GET', '/os-migrations', (200, {'migrations': []}),
             (200, {'migrations': [_migration(7, status, error_message='no room')]}))
    nova.add('GET', f'/servers/{SERVER_ID}', (200, {'server': _server()}))

    assert godwit('server', 'live-migrate', SERVER_ID, '--wait', '-f', 'json') == 3

    out, err = capsys.readouterr()
    assert json.loads(out)['status'] == status
    assert json.loads(out)['error_message'] == 'no room'
    # Not a terminal: one line for the phase seen, then the outcome and where
    # the server is now.
    assert err.splitlines() == [
        f'live-migration 7: {status}  0s',
        f'live-migration 7 ended {status} (h1 -> h2): no room',
        f'server {SERVER_ID} is ACTIVE on h1']


# -- other listings -----------------------------------------------------------

def test_migration_list_passes_filters(nova, godwit, capsys):
    nova.add('GET', '/os-migrations', (200, {'migrations': [_migration(3, 'running')]}))

    assert godwit('migration', 'list', '--host', 'h1', '--status', 'running',
                  '--instance', SERVER_ID, '--type', 'live-migration',
                  '--limit', '5', '--marker', 'mig-9', '-f', 'json') == 0

    assert nova.requests[0].query == {
        'host': 'h1', 'status': 'running', 'instance_uuid': SERVER_ID,
        'migration_type': 'live-migration', 'limit': '5', 'marker': 'mig-9'}
    assert _json_out(capsys) == [{
        'Id': 3, 'UUID': 'mig-3', 'Instance': SERVER_ID, 'Type': 'live-migration',
        'Status': 'running', 'Source': 'h1', 'Dest': 'h2',
        'Created': '2024-01-01T00:00:00.000000', 'Updated': None}]


def test_migration_show_displays_all_returned_fields(nova, godwit, capsys):
    migration = {'id': 3, 'server_uuid': SERVER_ID, 'status': 'running',
                 'memory_total_bytes': 1024, 'memory_remaining_bytes': 512}
    nova.add('GET', f'/servers/{SERVER_ID}/migrations/3', (200, {'migration': migration}))

    assert godwit('migration', 'show', SERVER_ID, '3', '-f', 'json') == 0

    assert nova.calls() == [('GET', f'/v2.1/servers/{SERVER_ID}/migrations/3')]
    assert _json_out(capsys) == migration


def test_flavor_list(nova, godwit, capsys):
    nova.add('GET', '/flavors/detail', (200, {'flavors': [
        {'id': '1', 'name': 'm1.tiny', 'ram': 512, 'vcpus': 1, 'disk': 1, 'links': []}]}))

    assert godwit('flavor', 'list', '-f', 'json') == 0

    assert _json_out(capsys) == [
        {'ID': '1', 'Name': 'm1.tiny', 'RAM': 512, 'vCPUs': 1, 'Disk': 1}]


def test_service_list_filters(nova, godwit, capsys):
    nova.add('GET', '/os-services', (200, {'services': [{
        'id': 'svc-1', 'binary': 'godwit-compute', 'host': 'h1', 'zone': 'nova',
        'status': 'disabled', 'state': 'down', 'updated_at': 't1',
        'disabled_reason': 'maintenance'}]}))

    assert godwit('service', 'list', '--host', 'h1', '--binary', 'godwit-compute',
                  '-f', 'csv') == 0

    assert nova.requests[0].query == {'host': 'h1', 'binary': 'godwit-compute'}
    assert capsys.readouterr().out.splitlines() == [
        '"ID","Binary","Host","Zone","Status","State","Updated At","Disabled Reason"',
        '"svc-1","godwit-compute","h1","nova","disabled","down","t1","maintenance"']


def test_hypervisor_list(nova, godwit, capsys):
    nova.add('GET', '/os-hypervisors/detail', (200, {'hypervisors': [{
        'id': 1, 'hypervisor_hostname': 'h1.node', 'state': 'up', 'status': 'enabled',
        'hypervisor_type': 'fake', 'vcpus': 8, 'vcpus_used': 2, 'memory_mb': 4096,
        'memory_mb_used': 1024, 'running_vms': 2}]}))

    assert godwit('hypervisor', 'list', '-f', 'value') == 0

    assert nova.calls() == [('GET', '/v2.1/os-hypervisors/detail')]
    assert capsys.readouterr().out == '1 h1.node fake up enabled 8 2 4096 1024 2\n'


def test_server_event_list(nova, godwit, capsys):
    nova.add('GET', f'/servers/{SERVER_ID}/os-instance-actions', (200, {'instanceActions': [
        {'action': 'live-migration', 'request_id': 'req-2', 'start_time': 't2',
         'message': None},
        {'action': 'create', 'request_id': 'req-1', 'start_time': 't1', 'message': None}]}))

    assert godwit('server', 'event', 'list', SERVER_ID, '-f', 'value') == 0

    assert nova.calls() == [('GET', f'/v2.1/servers/{SERVER_ID}/os-instance-actions')]
    assert capsys.readouterr().out == 'req-2 live-migration t2 None\nreq-1 create t1 None\n'


def test_server_event_list_long_has_one_row_per_event(nova, godwit, capsys):
    base = f'/servers/{SERVER_ID}/os-instance-actions'
    nova.add('GET', base, (200, {'instanceActions': [
        {'action': 'live-migration', 'request_id': 'req-2', 'start_time': 't2'},
        {'action': 'create', 'request_id': 'req-1', 'start_time': 't1'}]}))
    nova.add('GET', f'{base}/req-2', (200, {'instanceAction': {
        'action': 'live-migration', 'request_id': 'req-2', 'events': [
            {'event': 'compute_check_can_live_migrate_destination', 'start_time': 't3',
             'finish_time': 't4', 'result': 'Success', 'host': 'h2', 'traceback': None},
            {'event': 'compute_live_migration', 'start_time': 't5', 'finish_time': 't6',
             'result': 'Error', 'host': 'h1', 'traceback': 'Traceback...'}]}}))
    nova.add('GET', f'{base}/req-1', (200, {'instanceAction': {
        'action': 'create', 'request_id': 'req-1', 'events': []}}))

    assert godwit('server', 'event', 'list', SERVER_ID, '--long', '-f', 'json') == 0

    assert nova.calls() == [('GET', f'/v2.1{base}'), ('GET', f'/v2.1{base}/req-2'),
                            ('GET', f'/v2.1{base}/req-1')]
    rows = _json_out(capsys)
    assert [(r['Request ID'], r['Event'], r['Result'], r['Host']) for r in rows] == [
        ('req-2', 'compute_check_can_live_migrate_destination', 'Success', 'h2'),
        ('req-2', 'compute_live_migration', 'Error', 'h1'),
        ('req-1', None, None, None),  # action without events is still listed
    ]
    assert rows[1]['Traceback'] == 'Traceback...'


def test_success_with_non_json_body_is_reported(nova, godwit, capsys):
    nova.add('GET', '/flavors/detail', (200, '<html>proxy page</html>'))

    assert godwit('flavor', 'list') == 1

    assert capsys.readouterr().err == \
        f'ERROR: GET {nova.url}/flavors/detail returned a body that is not JSON\n'
