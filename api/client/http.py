"""Minimal JSON-over-HTTP layer for the compute API (v2.1, noauth2)."""

import requests

DEFAULT_ENDPOINT = 'http://127.0.0.1:8774/v2.1'
DEFAULT_API_VERSION = '2.80'

# Connect quickly so a dead endpoint fails fast; reads may wait for a slow API.
TIMEOUT = (5, 60)


class ClientError(Exception):
    """An API call failed; ``str()`` is the line the CLI prints."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self):
        if self.code is None:
            return f'ERROR: {self.message}'
        return f'ERROR ({self.code}): {self.message}'


def _error_message(resp):
    """Pull the human message out of a Nova fault body.

    Nova wraps faults in a single key named after the fault type, e.g.
    ``{"itemNotFound": {"code": 404, "message": "..."}}``; anything else
    (proxies, tracebacks) falls back to the raw text or the HTTP reason.
    """
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for fault in body.values():
            if isinstance(fault, dict) and fault.get('message'):
                return fault['message']
    return resp.text.strip() or resp.reason or 'unknown error'


class HTTPClient:
    def __init__(self, endpoint=DEFAULT_ENDPOINT, user='admin', project='admin',
                 api_version=DEFAULT_API_VERSION):
        self.endpoint = endpoint.rstrip('/')
        self.api_version = api_version
        self.session = requests.Session()
        self.session.headers.update({
            # noauth2 trusts "<user>:<project>" as the identity.
            'X-Auth-Token': f'{user}:{project}',
            # The legacy header is still what older Nova-compatible servers read.
            'OpenStack-API-Version': f'compute {api_version}',
            'X-OpenStack-Nova-API-Version': api_version,
            'Accept': 'application/json',
        })

    def request(self, method, path, params=None, body=None):
        url = self.endpoint + path
        try:
            resp = self.session.request(method, url, params=params, json=body,
                                        timeout=TIMEOUT)
        except requests.ConnectionError as exc:
            raise ClientError(
                f'cannot reach the compute API at {self.endpoint} ({_reason(exc)}); '
                'is godwit-api (or godwit-all) running?') from exc
        except requests.Timeout as exc:
            raise ClientError(f'request to {url} timed out') from exc
        if resp.status_code >= 400:
            raise ClientError(_error_message(resp), code=resp.status_code)
        if not resp.content:
            return None  # 202/204 actions often have no body
        try:
            return resp.json()
        except ValueError as exc:
            raise ClientError(f'{method} {url} returned a body that is not JSON') from exc

    def get(self, path, params=None):
        return self.request('GET', path, params=params)

    def post(self, path, body=None):
        return self.request('POST', path, body=body)

    def put(self, path, body=None):
        return self.request('PUT', path, body=body)

    def delete(self, path):
        return self.request('DELETE', path)

    def version_at_least(self, version):
        """Whether the microversion this client sends is ``version`` or later."""
        if self.api_version == 'latest':
            return True
        return _version_key(self.api_version) >= _version_key(version)


def _version_key(version):
    try:
        major, minor = version.split('.')
        return int(major), int(minor)
    except ValueError:
        raise ClientError(f'API version {version!r} is not of the form X.Y (e.g. 2.80); '
                          'fix --os-compute-api-version or GODWIT_COMPUTE_API_VERSION') \
            from None


def _reason(exc):
    # urllib3's "Max retries exceeded ... (Caused by ...)" wording buries the
    # common case; name it plainly and keep the full text for anything rarer.
    text = str(exc)
    return 'connection refused' if 'Connection refused' in text else text
