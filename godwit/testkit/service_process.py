"""One Godwit service run as an OS process, and the /proc look-ups around it.

Used by :mod:`godwit.testkit.deployment` (the process cloud of the test kit,
and Godwit's own chaos harness built on it): a :class:`ServiceProcess` is a
service's command, config file and log files across its starts and kills.
"""

import os
import socket
import sys
import time

#: The directory of this interpreter's scripts: the godwit-* commands of the
#: Godwit installed beside it, not whichever come first on PATH.
BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path, size):
    """The last ``size`` bytes of a file, decoded; "" if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def pid_gone(pid):
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def ancestors():
    """This process and its ancestors: never to be killed as a leftover."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def service_env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Import-time deprecation warnings (dnspython, eventlet) would fill the
    # console files that are there for start-up errors and tracebacks.
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def stamp():
    t = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def format_option(value):
    """An option's value as a config file spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def render_config(groups):
    """The text of a config file: ``groups`` is {group: {option: value}}."""
    lines = []
    for group, values in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {format_option(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


class ServiceProcess:
    """A service's command and files; ``proc`` is its current (or last) process.

    ``log`` is oslo.log's ``log_file`` (a restarted service appends to it);
    ``console`` takes stdout and stderr, where start-up tracebacks land. The
    deployment writes a line ``---- <tag> <time>: ...`` into the log at every
    start, kill and stop (:meth:`note`), so restarts are easy to find in it.
    """

    def __init__(self, name, binary, config, log, console, tag):
        self.name = name
        self.binary = binary
        self.config = config
        self.log = log
        self.console = console
        self.tag = tag
        self.proc = None
        self.console_file = None
        self.log_offset = 0     # size of the log when it was last started
        self.starts = 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def note_prefix(self):
        return f"---- {self.tag} "

    def note(self, text):
        """A line in the service's log, so restarts are easy to find in it."""
        with open(self.log, "a") as f:
            f.write(f"{self.note_prefix}{stamp()}: {text}\n")

    def close_console(self):
        if self.console_file is not None:
            self.console_file.close()
            self.console_file = None
