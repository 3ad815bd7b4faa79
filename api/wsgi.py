"""The WSGI application: routing, auth, microversions, Nova's error bodies.

Routes are one readable table (:data:`api.router.ROUTES`); each handler is a
plain function ``handler(req, **url_args) -> (status, body_dict_or_None)``
with ``req.context`` (who asks), ``req.api_version`` and ``req.api`` (the
:class:`api.compute_api.ComputeAPI`). Exceptions from :mod:`godwit.exception`
become Nova-shaped error bodies with the matching status.
"""

import json

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


def noauth2_context(req):
    """Nova's noauth2: the token is '<user>:<project>'; user 'admin' is an admin.

    A request without a token (``openstack --os-auth-type none``) acts as
    admin:admin. Development only; production uses keystone.
    """
    token = req.headers.get("X-Auth-Token", "admin:admin")
    user, _, project = token.partition(":")
    project = project or user
    roles = ["admin", "member", "reader"] if user == "admin" else ["member", "reader"]
    kwargs = {"user_id": user, "project_id": project, "roles": roles}
    request_id = req.headers.get("X-Openstack-Request-Id")
    if request_id:
        kwargs["request_id"] = request_id
    return godwit_context.RequestContext(**kwargs)


def parse_body(req):
    if not req.body:
        return None
    try:
        return json.loads(req.body)
    except ValueError:
        raise exception.Invalid(reason="the request body is not valid JSON") from None


class Application:
    def __init__(self, compute_api, route_table):
        self.api = compute_api
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
            req.context = noauth2_context(req)
            req.api = self.api
            req.json = parse_body(req)
            status, body = handler(req, **match)
            resp = json_response(status, body, version)
            resp.headers["X-Openstack-Request-Id"] = req.context.request_id
            return resp
        except exception.GodwitException as e:
            code = getattr(e, "code", 500) or 500
            if code >= 500:
                LOG.exception("Request %s %s failed", req.method, req.path)
            return json_response(code, error_body(code, str(e)), version)
        except Exception:
            LOG.exception("Unexpected error on %s %s", req.method, req.path)
            return json_response(500, error_body(
                500, "Unexpected API error; the godwit-api log has the traceback."), version)
