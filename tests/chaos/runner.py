"""Runs chaos cases (tests/chaos/matrix.py) side by side in one ChaosCloud.

Every case has hosts of its own where it needs them: the victim (unless it
is the conductor), and its own source where the hold is a property of the
host (the slow transfer of 'running', the single slot of 'queued'). Other
ends are shared by several cases; every fault is scoped to the case's
instance (``<step>@<uuid>``), so cases do not hold or break each other.

The sequence: boot every case's server; arm the holds; start every move
(in threads: some requests wait for the checks); as each move reaches its
phase, kill its victim (the conductor once every case is there); start the
victims again after RESTART_AFTER or DOWN_FOR seconds; wait for every move
to settle; check each case. All failures are collected and reported together.
"""

import dataclasses
import datetime
import os
import sys
import threading
import time

from godwit.testing import APIError, wait_for
from tests.chaos import matrix as mx

MEMORY_MB = 512           # m1.tiny
SLOW_BANDWIDTH_MB = 32    # a 512 MiB guest takes 16 s: longer than HOLD
RESIZE_FLAVOR = "2"       # m1.small (larger disk and RAM than m1.tiny)


@dataclasses.dataclass
class Case:
    kind: str
    phase: str
    victim: str
    mode: str
    source: str = None
    dest: str = None
    sid: str = None
    blocker: str = None
    migration: dict = None
    entered: float = None
    killed: float = None
    back: float = None
    error: str = None
    started: float = None

    @property
    def key(self):
        return (self.kind, self.phase, self.victim, self.mode)

    @property
    def name(self):
        return "/".join(self.key)

    @property
    def victim_host(self):
        return {"source": self.source, "destination": self.dest}.get(self.victim)

    def host_of(self, role):
        return self.source if role == "source" else self.dest


def plan(keys, conductor="cond-a"):
    """Cases for ``keys`` with their hosts: (cases, hosts, host_options)."""
    cases = [Case(*k) for k in keys]
    hosts, options = [], {}
    shared = {"src": "p-src", "dst": "p-dst"}

    def new(name, **fake):
        hosts.append(name)
        if fake:
            options[name] = {"fake": fake}
        return name

    for i, c in enumerate(cases):
        tag = f"{c.kind[0]}{i:02d}"
        slow = c.kind == "live" and c.phase in ("running", "queued")
        fake = {"migration_bandwidth_mb": SLOW_BANDWIDTH_MB} if slow else {}
        if c.victim == "source":
            c.source = new(f"{tag}-src", **fake)
            c.dest = shared["dst"]
        elif c.victim == "destination":
            c.source = new(f"{tag}-src", **fake) if slow else shared["src"]
            c.dest = new(f"{tag}-dst")
        else:
            c.source = new(f"{tag}-src", **fake) if slow else shared["src"]
            c.dest = shared["dst"]
        if c.phase == "queued":
            # One slot on the source, held by a slow move of another server.
            options.setdefault(c.source, {}).setdefault("DEFAULT", {})[
                "max_concurrent_live_migrations"] = 1
    for name in shared.values():
        hosts.append(name)
    # A resize goes where the scheduler sends it: to the host with the most free
    # RAM, which is the shared destination (every other host is smaller), never
    # to another case's victim.
    for name in hosts:
        if name != shared["dst"]:
            options.setdefault(name, {}).setdefault("fake", {})["memory_mb"] = 8192
    return cases, hosts, options


class Run:
    def __init__(self, cloud, cases, conductor="cond-a"):
        self.cloud = cloud
        self.client = cloud.client
        self.cases = cases
        self.conductor = conductor
        self.failures = []
        self.threads = []
        self.timers = []
        self._logs = {}       # host -> (bytes read, text) of its log (_log_of)

    # --- helpers ---------------------------------------------------------------------------
    def _bg(self, fn, *args, case=None):
        def run():
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - a request cut short by a kill is expected
                if case is not None:   # kept to explain a case that never started
                    case.request_error = f"{type(e).__name__}: {e}"
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def latest(self, sid):
        rows = self.cloud.db.migration_list({"instance_uuid": sid})
        return rows[0] if rows else None

    # --- the run -----------------------------------------------------------------------------
    def boot(self):
        self._armed = {}
        self._conductor_faults = []
        for c in self.cases:
            c.sid = self.client.create_server(f"chaos-{c.kind}-{c.phase}-{c.victim}-{c.mode}",
                                              host=c.source)["id"]
            if c.phase == "queued":
                c.blocker = self.client.create_server(f"chaos-blocker-{c.sid[:8]}",
                                                      host=c.source)["id"]
        for c in self.cases:
            assert self.client.server(c.sid)["status"] == "ACTIVE", c.name
            conductor_faults = [f.format(sid=c.sid) for f in (
                mx.LIVE_HOLDS if c.kind == "live" else mx.COLD_HOLDS)[c.phase].get(
                    "conductor", [])]
            if conductor_faults:
                self._conductor_faults.extend(conductor_faults)
        if self._conductor_faults:
            self.cloud.arm_conductor(self.conductor, self._conductor_faults)
        for c in self.cases:
            holds = (mx.LIVE_HOLDS if c.kind == "live" else mx.COLD_HOLDS)[c.phase]
            for role, faults in holds.items():
                if role == "conductor":
                    continue
                # A resize goes where the scheduler sends it: its destination's
                # holds go on every other host (scoped to the instance, they touch
                # nothing else).
                hosts = ([h for h in self.cloud.hosts if h != c.source]
                         if role == "destination" and self._resize(c) else [c.host_of(role)])
                for host in hosts:
                    self._armed.setdefault(host, []).extend(f.format(sid=c.sid)
                                                            for f in faults)
        for host, faults in self._armed.items():
            self.cloud.arm(host, faults)

    def start_moves(self):
        for c in self.cases:
            if c.phase == "queued":
                # The blocker goes to the shared destination: only the case's own
                # move meets its victim.
                self.client.live_migrate(c.blocker, host="p-dst")
                wait_for(f"{c.name}: blocker running", lambda c=c: (
                    lambda m: m and m["status"] == "running")(self.latest(c.blocker)),
                    timeout=60, interval=0.1)
        for c in self.cases:
            c.started = time.time()
            if c.kind == "live":
                self._bg(self.client.live_migrate, c.sid, c.dest, case=c)
            elif self._resize(c):
                self._bg(self.client.action, c.sid, "resize",
                         {"flavorRef": RESIZE_FLAVOR, "OS-DCF:diskConfig": "AUTO"}, case=c)
            else:
                self._bg(self.client.action, c.sid, "migrate", {"host": c.dest}, case=c)

    @staticmethod
    def _resize(c):
        return c.kind == "cold" and mx.cold_type(c.victim, c.mode) == "resize"

    def _in_phase(self, c):
        m = self.latest(c.sid)
        if m is None:
            return False
        c.migration = m
        if m["dest_compute"]:
            c.dest = m["dest_compute"]   # a resize's is the scheduler's choice
        decision = mx.COLD_DECISION.get(c.phase) if c.kind == "cold" else None
        if decision and m["status"] == "finished" and not getattr(c, "_decided", False):
            if c.phase == "finished":
                return True    # killed first; decided while the victim is away
            c._decided = True
            self._bg(self.client.action, c.sid, decision, None,
                     204 if decision == "confirmResize" else 202)
            return False
        if m["status"] != c.phase:
            return False
        if not self._held(c):
            return False
        if c.kind == "live" and c.phase == "running":
            # In 'running' once its job runs (entering the phase comes first).
            job = os.path.join(self.cloud.hosts_path, c.source, "jobs", f"{c.sid}.json")
            return os.path.exists(job)
        return True

    def _refused(self, c):
        """Whether ``c``'s request failed with nothing started: no migration."""
        return getattr(c, "request_error", None) is not None and self.latest(c.sid) is None

    def _held(self, c):
        """Whether the agent a case's hold is on has entered the held step (its
        log says the fault fired). The row enters a phase before its host step is
        delivered: an agent killed in between finds the question waiting in its
        queue when it returns, which is another case than the one meant."""
        if c.victim == "conductor" or self._resize(c):
            return True
        holds = (mx.LIVE_HOLDS if c.kind == "live" else mx.COLD_HOLDS)[c.phase]
        for role, faults in holds.items():
            if role == "conductor":
                continue
            host = c.host_of(role)
            log = self._log_of(host)
            for fault in faults:
                step, action = fault.split("@")[0], fault.split(":")[1]
                if action in ("delay", "hang") and \
                        f"Injected fault on {host}: {step} {action}" not in log:
                    return False
        return True

    def _log_of(self, host):
        """``host``'s log so far, in whole lines; only what was appended since
        the last look is read (this is polled every 50 ms per waiting case)."""
        offset, text = self._logs.get(host, (0, ""))
        try:
            with open(self.cloud.root / "log" / f"{host}.log", "rb") as f:
                f.seek(offset)
                new = f.read()
        except FileNotFoundError:
            new = b""
        whole = new[:new.rfind(b"\n") + 1]
        self._logs[host] = (offset + len(whole), text + whole.decode(errors="replace"))
        return self._logs[host][1]

    def kill_in_phase(self, timeout=90):
        """Kill each agent victim as its case reaches its phase; the conductor once
        every conductor case is there."""
        pending = list(self.cases)
        deadline = time.monotonic() + timeout
        conductor_cases = [c for c in self.cases if c.victim == "conductor"]
        while pending and time.monotonic() < deadline:
            for c in list(pending):
                if self._refused(c):
                    # Counted as failed now, so that the other cases still get
                    # their kill: a conductor kept waiting for this one would
                    # leave every other conductor case in its hold.
                    pending.remove(c)
                    c.error = f"never reached '{c.phase}' (request: {c.request_error})"
                    self.failures.append(f"{c.name}: {c.error}")
                elif self._in_phase(c):
                    c.entered = time.time()
                    pending.remove(c)
                    if c.victim != "conductor":
                        self.cloud.kill(c.victim_host)
                        c.killed = time.time()
                        self._bring_back_later(c.victim_host, [c], c.mode)
            if conductor_cases and all(c.entered or c.error for c in conductor_cases) and \
                    any(c.entered for c in conductor_cases) and \
                    not any(c.killed for c in conductor_cases):
                conductor_cases = [c for c in conductor_cases if not c.error]
                self.cloud.kill(self.conductor)
                self._bring_back_later(self.conductor, conductor_cases,
                                       conductor_cases[0].mode)
                for c in conductor_cases:
                    c.killed = time.time()
                    # Still there when the conductor died?
                    m = self.latest(c.sid)
                    if m["status"] != c.phase and not (c.phase == "finished" and
                                                       m["status"] == "finished"):
                        c.error = (f"left '{c.phase}' for '{m['status']}' before the "
                                   "conductor was killed (hold too short)")
                        self.failures.append(f"{c.name}: {c.error}")
            time.sleep(0.05)
        for c in pending:
            m = self.latest(c.sid)
            c.error = (f"never reached '{c.phase}' (last: {m and m['status']}; request: "
                       f"{getattr(c, 'request_error', None) or 'no error yet'})")
            self.failures.append(f"{c.name}: {c.error}")

    def decide_while_away(self):
        """'finished' cases: the user decides while the victim is away."""
        for c in self.cases:
            if c.phase == "finished" and c.killed and not c.error:
                self._bg(self.client.action, c.sid, "confirmResize", None, 204)

    def _bring_back_later(self, name, cases, mode):
        """Start ``name`` again RESTART_AFTER or DOWN_FOR seconds from now."""
        after = mx.RESTART_AFTER if mode == "restart" else mx.DOWN_FOR

        def back():
            self.cloud.start_service(name)
            for c in cases:
                c.back = time.time()
        timer = threading.Timer(after, back)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def bring_back(self):
        """Wait until every victim has been started again."""
        for timer in self.timers:
            timer.join(mx.DOWN_FOR + 60)

    def settle(self):
        """Wait for each move to end (or to wait for the user, where that is what is
        expected). An 'error' that awaits a host is not an end: it resumes."""
        final = {"completed", "failed", "cancelled", "confirmed", "reverted", "error"}
        for c in self.cases:
            if c.error or c.back is None:
                continue
            want, _where = mx.expected(c.key)

            def done(c=c, want=want):
                m = self.latest(c.sid)
                if m is not None and (m["status"] == want or (
                        m["status"] in final and not m["awaiting_hosts"])):
                    return m
                return None
            try:
                c.migration = wait_for(f"{c.name} to settle", done,
                                       timeout=max(5, c.back + mx.SETTLE - time.time()),
                                       interval=0.2)
            except AssertionError:
                m = self.latest(c.sid)
                c.error = (f"did not settle in {mx.SETTLE} s after the victim returned "
                           f"(status {m and m['status']}: {m and m['error_message']})")
                self.failures.append(f"{c.name}: {c.error}")

    def check(self):
        for c in self.cases:
            if c.error:
                continue
            try:
                self._check(c)
            except AssertionError as e:
                c.error = str(e)
                self.failures.append(f"{c.name}: {e}")

    def _check(self, c):
        want, where = mx.expected(c.key)
        m = c.migration
        assert m["status"] == want, (f"ended {m['status']} (want {want}): "
                                     f"{m['error_message']}")
        if want == "finished":
            self.client.action(c.sid, "confirmResize", None, 204)
            m = wait_for(f"{c.name} confirmed", lambda: (
                lambda m: m if m["status"] == "confirmed" else None)(self.latest(c.sid)),
                timeout=60)
        host = c.dest if where == "destination" else c.source
        other = c.source if host == c.dest else c.dest
        server = self.client.server(c.sid)
        assert server["OS-EXT-SRV-ATTR:host"] == host, \
            f"the database says {server['OS-EXT-SRV-ATTR:host']}, expected {host}"
        assert server["OS-EXT-STS:task_state"] is None, server["OS-EXT-STS:task_state"]
        assert server["status"] == "ACTIVE", (server["status"], server.get("fault"))
        # The guest runs on exactly one host, and nothing of it is left elsewhere
        # (clean-up left for a host that was away runs when it reports again).
        dom = self.cloud.fake(host).get("domains", c.sid)
        assert dom is not None and dom["power_state"] == 1 and not dom.get("incoming") \
            and not dom.get("switched_out"), f"guest on {host}: {dom}"
        for h in self.cloud.hosts:
            if h == host:
                continue
            wait_for(f"{c.name}: nothing of the guest left on {h}",
                     lambda h=h: self.cloud.fake(h).is_empty_for(c.sid) and not
                     self._files(h, c.sid), timeout=60, interval=0.2)
        assert other not in (None, host)
        # No host made any record of the guest twice during the move: each step
        # did its work at most once, crashes included.
        for h in (c.source, c.dest):
            seen = {}
            for e in self.cloud.fake(h).effects(since=c.started):
                if e.get("instance") != c.sid:
                    continue
                if e["op"] == "create":
                    k = (e["kind"], e["key"])
                    seen[k] = seen.get(k, 0) + 1
            twice = {k: n for k, n in seen.items() if n > 1}
            assert not twice, f"records created more than once on {h}: {twice}"

    def _files(self, host, sid):
        path = os.path.join(self.cloud.state_path, "instances", host)
        try:
            return [n for n in os.listdir(path) if n.startswith(sid)]
        except FileNotFoundError:
            return []

    def execute(self):
        self.boot()
        self.start_moves()
        self.kill_in_phase()
        self.decide_while_away()
        self.bring_back()
        self.settle()
        self.check()
        self.failures += [f"reconciler: {o}" for o in orphans(self.cloud)]
        return self.failures


def settled_after(c):
    """Seconds from the victim's return to the move's last update (its end)."""
    updated = (c.migration or {}).get("updated_at")
    if updated is None or c.back is None:
        return None
    return round(updated.replace(tzinfo=datetime.timezone.utc).timestamp() - c.back, 1)


def report(cases):
    """One line per case: its outcome and how long it took to settle."""
    lines = []
    for c in cases:
        status = (c.migration or {}).get("status")
        lines.append(f"{c.name}: {'FAILED ' + c.error if c.error else status}; victim back "
                     f"{c.back and round(c.back - (c.killed or 0), 1)} s after the kill, "
                     f"settled {settled_after(c)} s after its return")
    return "\n".join(lines)


def orphans(cloud):
    """What the reconciler finds on every host (``godwit-manage reconcile --json``)."""
    import json
    import subprocess
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "godwit-manage"),
                        "--config-file", str(cloud._manage_config), "reconcile", "--json"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode not in (0, 3):
        raise AssertionError(f"godwit-manage reconcile failed: {r.stdout}{r.stderr}")
    found = json.loads(r.stdout)
    assert (r.returncode == 3) == bool(found), (r.returncode, found)
    return found


def refuse(client, sid, action, body=None):
    try:
        client.action(sid, action, body)
    except APIError as e:
        return e.status
    return None
