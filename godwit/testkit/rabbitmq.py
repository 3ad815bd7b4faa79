"""A RabbitMQ virtual host of its own for each process cloud.

oslo.messaging's rabbit driver names a topic's queue after the topic alone
("conductor", "compute.<host>"), whatever the control exchange: two
deployments on one vhost share those queues and answer each other's calls,
and a message a SIGKILLed service left unread would reach the next cloud's
services. So every process cloud that is not given a transport URL gets a
fresh vhost, made through the management API (HTTP, port 15672) when the
broker has the management plugin, else with ``rabbitmqctl`` on this machine,
and deleted when the cloud stops.
"""

import base64
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid

#: The broker a process cloud uses unless told otherwise.
DEFAULT_BROKER_URL = os.environ.get("GODWIT_KIT_RABBIT_URL",
                                    "rabbit://guest:guest@127.0.0.1:5672/")
RABBITMQCTL = os.environ.get("GODWIT_KIT_RABBITMQCTL", "rabbitmqctl")
MANAGEMENT_PORT = 15672


class VhostError(RuntimeError):
    pass


def _parts(broker_url):
    parts = urllib.parse.urlsplit(broker_url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    return parts, user, password


def _management(broker_url, method, path, body=None):
    """A call to the management API of the broker of ``broker_url``; False if
    the broker has none (nothing listens on the management port)."""
    parts, user, password = _parts(broker_url)
    url = f"http://{parts.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/api/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json",
        "authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as e:
        if method == "DELETE" and e.code == 404:
            return True
        raise VhostError(f"RabbitMQ management API: {method} {path}: {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError):
        return False


def _rabbitmqctl(*args):
    try:
        r = subprocess.run([RABBITMQCTL, "-q", *args], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        raise VhostError(f"{RABBITMQCTL} {' '.join(args)}: {e}") from e
    if r.returncode != 0:
        raise VhostError(f"{RABBITMQCTL} {' '.join(args)} exited with {r.returncode}: "
                         f"{r.stdout}{r.stderr}")


def create_vhost(broker_url=DEFAULT_BROKER_URL, prefix="godwit-kit"):
    """A fresh vhost on the broker of ``broker_url``, its user allowed everything
    there: (transport URL of the vhost, vhost name). VhostError if neither the
    management API nor rabbitmqctl can make one."""
    parts, user, _ = _parts(broker_url)
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    quoted = urllib.parse.quote(vhost, safe="")
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    if _management(broker_url, "PUT", f"vhosts/{quoted}", {}):
        _management(broker_url, "PUT", f"permissions/{quoted}/{urllib.parse.quote(user)}",
                    everything)
    else:
        try:
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        except VhostError as e:
            raise VhostError(
                f"cannot make a RabbitMQ vhost on {parts.hostname}: no management API on port "
                f"{MANAGEMENT_PORT} and {e}; give the cloud a transport_url of its own "
                "vhost") from None
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + quoted, "", ""))
    return url, vhost


def delete_vhost(broker_url, vhost):
    """Delete ``vhost`` (and every queue in it) from the broker of ``broker_url``."""
    quoted = urllib.parse.quote(vhost, safe="")
    if not _management(broker_url, "DELETE", f"vhosts/{quoted}"):
        _rabbitmqctl("delete_vhost", vhost)
