"""Cold migration of a real qcow2 disk over SSH against a plain rsync of the same file.

Godwit as processes (:class:`bench.common.HostConfigDeployment`: conductor,
API and two godwit-compute agents over RabbitMQ and a fresh PostgreSQL
database) with the fake virt driver on real qcow2 disks (``[fake]
disk_format = qcow2``), each agent with an instances path of its own, and
the ``rsync`` transfer driver over a real sshd on 127.0.0.1
(``tests/sshd.py``, the tests' own). The server's root disk (m1.tiny: 1 GiB
virtual) is filled with random data before the first move: a full run moves
1 GiB of incompressible, fully allocated data, a quick run 256 MiB (the rest
of the virtual disk unallocated).

Alternately, on the same file:

* **Godwit**: ``POST {"migrate": {"host": <other>}}`` until the migration row
  is ``finished`` (VERIFY_RESIZE), timed from a UTC timestamp taken just
  before the POST to the row's ``updated_at``; then ``confirmResize``
  (timed separately) so that the next move can start;
* **rsync**: the same ``rsync -a <rsync_options> -e "ssh ..."`` the driver
  runs (options, ssh options, key and known_hosts taken from the driver
  itself), of the file where the server now is, to a fresh directory on the
  same sshd; removed afterwards.

After a warm-up Godwit move (not counted; none in a quick run, whose first
round starts with the rsync), each round is one Godwit move and one rsync, the
order alternating from round to round (R G, G R, ...). Godwit
moves go back and forth, so both directions count. The disk and the copies
stay in the page cache, so both sides measure ssh + rsync (+ what Godwit
adds), not the disk.

:func:`measure` runs on a deployment and sshd that :mod:`bench.real` starts
(shared with the libvirt section).
"""

import os
import shutil
import subprocess
import time

from bench import common
from godwit import states

MIB = 1024 ** 2
FLAVOR = "1"   # m1.tiny: root_gb 1


def make_random_disk(path, data_mib, virtual_gib=1):
    """A qcow2 of ``virtual_gib`` whose first ``data_mib`` MiB are random bytes (allocated)."""
    raw = path + ".raw"
    try:
        with open(raw, "wb") as f:
            for _ in range(data_mib // 4):
                f.write(os.urandom(4 * MIB))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path + ".new",
                        f"{virtual_gib}G"], check=True, capture_output=True, timeout=60)
        subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw,
                        path + ".new"], check=True, capture_output=True, timeout=600)
        os.replace(path + ".new", path)
    finally:
        for p in (raw, path + ".new"):
            if os.path.exists(p):
                os.unlink(p)
    return os.path.getsize(path)


def rsync_argv(conf, src, host, dest):
    """The command the rsync transfer driver runs for ``copy_to(src, host, dest)``."""
    from compute.transfer.ssh import RsyncTransfer
    t = RsyncTransfer(conf)
    cmd = ["rsync", "-a", *t.rsync_options]
    if t.bandwidth_limit_kbps:
        cmd.append(f"--bwlimit={t.bandwidth_limit_kbps}")
    login = f"{t.user}@{host}" if t.user else host
    return cmd + ["-e", t.rsh, "--", src, f"{login}:{dest}"]


def agent_groups(server, instances_path):
    """Options of an agent that moves qcow2 disks with rsync over the test sshd."""
    return {"DEFAULT": {"instances_path": instances_path},
            "fake": {"disk_format": "qcow2"},
            "transfer": dict(server.transfer_opts(), driver="rsync")}


def measure(dep, hosts, paths, server, scratch, n, data_mib, warm=1):
    """``warm`` warm-up Godwit moves (and confirms), then ``n`` rounds of
    (rsync, Godwit move), the order alternating, on the agents ``hosts`` whose
    instances paths are ``paths``; fresh rsync destinations go under ``scratch``."""
    from godwit.testing import Client
    t_start = time.perf_counter()
    a, b = hosts
    path_of = dict(zip(hosts, paths))
    client = Client(dep.api_url)
    sid = common.boot_flavor(client, "bench-cold-ssh", a, FLAVOR)
    disk_bytes = make_random_disk(os.path.join(path_of[a], sid, "disk"), data_mib)
    disk_s = time.perf_counter() - t_start
    conf = server.conf("rsync")
    command = " ".join(rsync_argv(conf, "<disk>", server.host, "<fresh dir>/disk"))
    godwit, rsync, confirm, order = [], [], [], []
    state = {"on": a, "copies": 0}

    def godwit_move():
        dest = b if state["on"] == a else a
        took, row, _seen = common.timed_move(client, conn, sid, {"migrate": {"host": dest}},
                                             "finished")
        done, _row, _seen = common.timed_move(client, conn, sid, {"confirmResize": None},
                                              "confirmed", migration_id=row.id)
        state["on"] = dest
        return took, done

    def rsync_copy():
        state["copies"] += 1
        src = os.path.join(path_of[state["on"]], sid, "disk")
        dest_dir = os.path.join(scratch, f"rsync-{state['copies']}")
        os.makedirs(dest_dir)
        argv = rsync_argv(conf, src, server.host, os.path.join(dest_dir, "disk"))
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=600)
        took = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"rsync failed ({proc.returncode}): {proc.stderr}")
        if os.path.getsize(os.path.join(dest_dir, "disk")) != os.path.getsize(src):
            raise RuntimeError("rsync copied a different size")
        shutil.rmtree(dest_dir)
        return took

    t_moves = time.perf_counter()
    with dep.engine.connect() as conn:
        for _ in range(warm):
            godwit_move()
        since = common.max_action_id(conn)
        for r in range(n):
            for kind in (("rsync", "godwit") if r % 2 == 0 else ("godwit", "rsync")):
                if kind == "godwit":
                    took, done = godwit_move()
                    godwit.append(took)
                    confirm.append(done)
                else:
                    rsync.append(rsync_copy())
                order.append(kind[0].upper())
    moves_s = time.perf_counter() - t_moves
    moved = os.path.getsize(os.path.join(path_of[state["on"]], sid, "disk"))
    if moved != disk_bytes:
        raise RuntimeError(f"the disk is {moved} bytes after the moves, not {disk_bytes}")
    logs = dep.log_text(a) + dep.log_text(b)
    if "with rsync" not in logs:
        raise RuntimeError("Godwit did not copy the disk with rsync")
    time.sleep(0.3)   # the last event casts
    steps = common.event_steps(dep.engine, since, states.ACTION_MIGRATE)
    return {"godwit": common.summarize(godwit), "rsync": common.summarize(rsync),
            "confirm": common.summarize(confirm), "order": "".join(order), "rounds": n,
            "warmup": f"{warm} Godwit move(s) + confirm", "data_mib": data_mib,
            "disk_bytes": disk_bytes, "steps_ms": steps, "rsync_command": command,
            "phases_s": {"boot_and_make_disk": round(disk_s, 1), "moves": round(moves_s, 1),
                         "total": round(time.perf_counter() - t_start, 1)}}
