"""The WSGI application: routing, auth, microversions, Nova's error bodies.

Routes are one readable table (:data:`api.router.ROUTES`); each handler is a
plain function ``handler(req, **url_args) -> (status, body_dict_or_None)``
with ``req.context`` (who asks), ``req.api_version`` and ``req.api`` (the
:class:`api.compute_api.ComputeAPI`). Exceptions from :mod:`godwit.exception`
become Nova-shaped error bodies with the matching status.

Who asks comes from ``[api] auth_strategy``:

- ``noauth2`` (the default, for development): Nova's token format
  ``X-Auth-Token: <user>:<project>``; the user ``admin`` is an admin. A
  request without a token, or with keystoneauth's ``none`` plugin's token
  ``notused`` (``openstack --os-auth-type none``), acts as ``admin:admin``.
- ``keystone``: keystonemiddleware's ``auth_token`` validates the token (its
  options are in ``[keystone_authtoken]``) and the context is built from the
  ``X-User-Id``, ``X-Project-Id`` and ``X-Roles`` headers it sets. As in Nova,
  the version documents at ``/`` and ``/v2.1`` need no token.
"""

import io
import json
import re

import routes
import webob
import webob.dec
from oslo_log import log as logging

from api import microversion
from godwit import context as godwit_context
from godwit import exception

LOG = logging.getLogger(__name__)

ERROR_KEYS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
              405: "badMethod", 406: "notAcceptable", 409: "conflictingRequest",
              413: "overLimit", 415: "badMediaType", 501: "notImplemented",
              503: "serviceUnavailable"}
# keystoneauth's "none" plugin always sends this token.
NOAUTH_PLACEHOLDER_TOKENS = {"", "notused"}


class NotAuthenticated(exception.GodwitException):
    code = 401
    msg_fmt = "The request you have made requires authentication."


def error_body(code, message):
    return {ERROR_KEYS.get(code, "computeFault"): {"code": code, "message": message}}


def json_response(status, body, version=None):
    resp = webob.Response(status=status)
    if body is not None:
        resp.content_type = "application/json"
        resp.charset = "utf-8"
        resp.body = json.dumps(body, default=str).encode()
    if version is not None:
        resp.headers["OpenStack-API-Version"] = f"compute {version}"
        resp.headers["X-OpenStack-Nova-API-Version"] = str(version)
        resp.headers["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
    return resp


def _request_id(req):
    request_id = req.headers.get("X-Openstack-Request-Id")
    return {"request_id": request_id} if request_id else {}


def noauth2_context(req):
    """Nova's noauth2: the token is '<user>:<project>'; user 'admin' is an admin."""
    token = (req.headers.get("X-Auth-Token") or "").strip()
    if token in NOAUTH_PLACEHOLDER_TOKENS:
        token = "admin:admin"
    user, _, project = token.partition(":")
    project = project or user
    roles = ["admin", "member", "reader"] if user == "admin" else ["member", "reader"]
    return godwit_context.RequestContext(user_id=user, project_id=project, roles=roles,
                                         **_request_id(req))


def keystone_context(req):
    """The context from the headers keystonemiddleware's auth_token sets."""
    if req.headers.get("X-Identity-Status", "Invalid") != "Confirmed":
        raise NotAuthenticated()
    user = req.headers.get("X-User-Id") or req.headers.get("X-User")
    project = req.headers.get("X-Project-Id") or req.headers.get("X-Tenant-Id")
    roles = [r.strip().lower() for r in req.headers.get("X-Roles", "").split(",")
             if r.strip()]
    return godwit_context.RequestContext(
        user_id=user, project_id=project, roles=roles,
        user_name=req.headers.get("X-User-Name"),
        project_name=req.headers.get("X-Project-Name"),
        auth_token=req.headers.get("X-Auth-Token"), **_request_id(req))


CONTEXT_BUILDERS = {"noauth2": noauth2_context, "keystone": keystone_context}


# No Nova request body nests more than a handful of levels; json.loads and
# the schema validator recurse once per level and fail (RecursionError, a
# 500) long before Python's limit of about 1000 is reached by the data.
MAX_JSON_DEPTH = 32
# A JSON string (with its escapes) and the brackets outside strings.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth_exceeds(body, limit=MAX_JSON_DEPTH):
    """Whether ``body`` (bytes) nests arrays and objects deeper than ``limit``:
    one linear pass, without parsing, so a body of 100,000 '[' costs
    milliseconds and no recursion."""
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_body(req):
    if not req.body:
        return None
    if json_depth_exceeds(req.body):
        raise exception.Invalid(f"Malformed request body: JSON nested more than "
                                f"{MAX_JSON_DEPTH} levels deep; send a flatter body")
    try:
        return json.loads(req.body)
    except RecursionError:  # a backstop: the depth check should prevent it
        raise exception.Invalid("Malformed request body: JSON nested too deeply") from None
    except ValueError as e:
        # UnicodeDecodeError and Python's refusal of integers of thousands of
        # digits are ValueErrors too; say which.
        raise exception.Invalid(f"Malformed request body: cannot understand JSON ({e})"
                                ) from None


_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)+: ")


def clean_message(text):
    """A refusal's message without the tracebacks oslo.messaging appends to
    exceptions that crossed RPC (possibly several hops deep)."""
    if _TRACEBACK not in text:
        return text
    kept, state = [], "text"
    for line in text.split("\n"):
        if line.startswith(_TRACEBACK):
            state = "traceback"
            continue
        if state == "traceback":
            if not line.strip() or line.startswith((" ", "\t")):
                continue
            state = "after"  # the exception line closing the traceback
            continue
        if state == "after" and (not line.strip() or _EXCEPTION_LINE.match(line)):
            continue
        state = "text"
        kept.append(line)
    out = ""
    for line in kept:
        if not line.strip():
            continue
        out += line if not out or line.startswith((";", ",", ".")) else " " + line
    return out.strip()


def exception_message(e):
    message = e.message if isinstance(e, exception.GodwitException) and \
        isinstance(getattr(e, "message", None), str) else str(e)
    return clean_message(message)


class Application:
    """Routes a request to its handler, with context, microversion and body."""

    def __init__(self, compute_api, route_table, public=(), context_builder=noauth2_context):
        self.api = compute_api
        self.public = set(public)
        self.context_builder = context_builder
        self.mapper = routes.Mapper()
        for path, methods in route_table.items():
            for method, handler in methods.items():
                self.mapper.connect(path, action=handler, conditions={"method": [method]})

    @webob.dec.wsgify
    def __call__(self, req):
        version = None
        try:
            match = self.mapper.match(environ=req.environ)
            if match is None:
                if self.mapper.match(req.path_info) is not None:
                    return json_response(405, error_body(
                        405, f"The method {req.method} is not allowed on {req.path_info}."))
                return json_response(404, error_body(404, f"No resource at {req.path_info}."))
            handler = match.pop("action")
            match.pop("controller", None)
            version = microversion.from_headers(req.headers)
            req.api_version = version
            if req.path_info in self.public:
                req.context = godwit_context.RequestContext(**_request_id(req))
            else:
                req.context = self.context_builder(req)
            req.api = self.api
            req.json = parse_body(req)
            status, body = handler(req, **match)
            resp = json_response(status, body, version)
            resp.headers["X-Openstack-Request-Id"] = req.context.request_id
            resp.headers["X-Compute-Request-Id"] = req.context.request_id
            return resp
        except exception.GodwitException as e:
            code = getattr(e, "code", 500) or 500
            if code >= 500:
                LOG.exception("Request %s %s failed", req.method, req.path)
            return json_response(code, error_body(code, exception_message(e)), version)
        except Exception:
            LOG.exception("Unexpected error on %s %s", req.method, req.path)
            return json_response(500, error_body(
                500, "Unexpected API error; the godwit-api log has the traceback."), version)


class Guard:
    """What is refused before routing, authentication or any parsing, with
    Nova's JSON error bodies rather than waitress's text/plain 500:

    - a path that is not UTF-8 once percent-decoded (webob and Routes decode
      it and raise, outside every handler);
    - a body over ``[api] max_request_body_size`` (413, as Nova's sizelimit
      middleware answers), by its Content-Length or, for a chunked body, by
      reading one byte past the limit, so no request makes the API buffer
      more than that.

    It also starts each request with its own context, so whatever is logged
    while answering is logged under this request's id and not the id of the
    previous request the thread served.
    """

    def __init__(self, app, max_body):
        self.app = app
        self.max_body = max_body

    def __call__(self, environ, start_response):
        godwit_context.RequestContext(
            request_id=environ.get("HTTP_X_OPENSTACK_REQUEST_ID") or None)
        # PEP 3333: PATH_INFO holds the decoded bytes as latin-1 characters.
        try:
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return self._refuse(environ, start_response, 400,
                                "The URL path is not valid UTF-8 once percent-decoded; "
                                "percent-encode the UTF-8 bytes of the name or id.")
        length = environ.get("CONTENT_LENGTH") or ""
        if length:
            if not (length.isascii() and length.isdigit()):
                return self._refuse(environ, start_response, 400,
                                    f"Invalid Content-Length {length[:40]!r}")
            if len(length) > 12 or int(length) > self.max_body:
                return self._refuse(environ, start_response, 413, self._too_large())
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.max_body + 1)
            if len(body) > self.max_body:
                return self._refuse(environ, start_response, 413, self._too_large())
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _too_large(self):
        return (f"Request is too large: the body may be at most {self.max_body} bytes "
                "([api] max_request_body_size).")

    @staticmethod
    def _refuse(environ, start_response, code, message):
        resp = json_response(code, error_body(code, message))
        return resp(environ, start_response)


class PublicOrProtected:
    """Sends the public paths (version documents) straight to the app and
    everything else through the authenticating middleware."""

    def __init__(self, app, protected, public):
        self.app = app
        self.protected = protected
        self.public = set(public)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") in self.public:
            return self.app(environ, start_response)
        return self.protected(environ, start_response)


def build(compute_api, route_table, public, conf):
    strategy = conf.api.auth_strategy
    app = Application(compute_api, route_table, public, CONTEXT_BUILDERS[strategy])
    if strategy == "keystone":
        from keystonemiddleware import auth_token
        protected = auth_token.AuthProtocol(app, {"oslo_config_config": conf})
        app = PublicOrProtected(app, protected, public)
    return Guard(app, conf.api.max_request_body_size)
