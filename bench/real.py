"""Real hypervisor and real transfer: one deployment for both measurements.

Starts what the two sections need and one Godwit deployment over them
(:class:`bench.common.HostConfigDeployment`: conductor, API and one
godwit-compute per host, as processes over RabbitMQ and a fresh PostgreSQL
database), then runs each section on its own pair of agents:

* two real libvirtd hosts (``tests/real/hosts.py``) and two agents with
  ``virt_driver = libvirt`` sharing one instances path:
  :func:`bench.libvirt_live.measure` (Godwit live migration against a direct
  ``migrateToURI3``);
* a test sshd on 127.0.0.1 (``tests/sshd.py``) and two agents with the fake
  driver on real qcow2 disks, instances paths apart and the rsync transfer
  driver: :func:`bench.cold_transfer.measure` (Godwit cold migration against
  a plain rsync).

One deployment rather than two saves a start and a stop of four processes
(about 15 s), which keeps ``--quick`` under three minutes. A section whose
prerequisites are missing, or that fails, is recorded with the reason and
the other one still runs. Everything started here - libvirt daemons and
their guests, sshd, the services, the database, the RabbitMQ vhost, the disk
images - is removed at the end, also on failure.
"""

import os
import shutil
import time
import traceback

from bench import cold_transfer, common, continuity, libvirt_live


def _hosts_module():
    # The bench's daemons keep their QEMU capabilities cache apart from the
    # tests' (which may run at the same time on this machine); the first run
    # pays QEMU's probing once (about 8 s).
    os.environ.setdefault("GODWIT_LIBVIRT_CACHE", "/var/tmp/godwit-libvirt-cache-bench")
    from tests.real import hosts
    return hosts


def _error(e):
    return f"{e.__class__.__name__}: {e}"


def run(workdir, lv_rounds, cold_rounds, cold_mib, lv_warm=1, cold_warm=1, cont_rounds=1,
        log=print):
    """{"libvirt": result or {"error": ...}, "cold": the same, "continuity": the same,
    "setup_s": ...}."""
    from tests import sshd as sshd_mod
    t0 = time.perf_counter()
    files = os.path.join(workdir, "real-files")      # disks, sshd, libvirt trees
    os.makedirs(files, exist_ok=True)
    out = {"libvirt": None, "cold": None, "continuity": None,
           "loadavg_at_start": list(os.getloadavg())}
    hosts_mod, lvs, server, dep = None, None, None, None
    net, net_lvs = None, None
    try:
        try:
            hosts_mod = _hosts_module()
            lvs = hosts_mod.start_hosts(os.path.join(files, "libvirt"))
        except Exception as e:  # noqa: BLE001 - HostSetupError, ImportError, ...
            out["libvirt"] = {"error": f"cannot start two libvirt hosts: {_error(e)}"}
        try:
            server = sshd_mod.start_sshd(os.path.join(files, "sshd"))
        except Exception as e:  # noqa: BLE001 - SshUnavailable, ...
            out["cold"] = {"error": f"cannot start the test sshd: {_error(e)}"}
        try:
            _hosts_module()
            net, net_lvs, store = continuity.setup(files)
        except Exception as e:  # noqa: BLE001 - GuestBuildError, HostSetupError, ...
            out["continuity"] = {"error": f"cannot set up the continuity hosts: {_error(e)}"}
        groups, roles = [], []
        cont_path = os.path.join(files, "instances-continuity")
        if net_lvs:
            groups += [continuity.agent_groups(cont_path, lv, net, i, store)
                       for i, lv in enumerate(net_lvs)]
            roles += ["continuity", "continuity"]
        if lvs:
            groups += [libvirt_live.agent_groups(lv) for lv in lvs]
            roles += ["libvirt", "libvirt"]
        cold_paths = [os.path.join(files, f"instances-{i}") for i in range(2)]
        if server:
            groups += [cold_transfer.agent_groups(server, p) for p in cold_paths]
            roles += ["cold", "cold"]
        if not groups:
            return out
        dep = common.HostConfigDeployment("real", workdir, computes=len(groups),
                                          host_prefix="real",
                                          host_groups=lambda i, h: groups[i])
        try:
            dep.start()
            dep.create_flavor(**libvirt_live.FLAVOR)
            dep.create_flavor(**continuity.FLAVOR)
        except Exception as e:  # noqa: BLE001 - recorded for both sections
            traceback.print_exc()
            print(dep.logs(), flush=True)
            for role in set(roles):
                out[role] = {"error": f"the deployment did not start: {_error(e)}"}
            return out
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        log(f"  libvirt hosts, sshd and {len(groups)} agents up in {out['setup_s']} s")
        hosts_of = {role: [h for h, r in zip(dep.hosts, roles) if r == role]
                    for role in set(roles)}
        if lvs:
            log(f"  libvirt: {lv_warm} warm-up Godwit pair(s) + {lv_rounds} rounds of a "
                "Godwit and a direct pair")
            try:
                out["libvirt"] = libvirt_live.measure(dep, hosts_of["libvirt"], lvs, lv_rounds,
                                                      warm=lv_warm)
            except Exception as e:  # noqa: BLE001 - recorded; the cold section still runs
                traceback.print_exc()
                out["libvirt"] = {"error": _error(e)}
                print(f"bench: libvirt section failed; service logs in {dep.dir}", flush=True)
                for lv in lvs:
                    print(f"==== libvirtd {lv.name}\n{lv.output()[-2000:]}", flush=True)
        if net_lvs:
            log(f"  continuity: a kernel guest pinged every 10 ms through {cont_rounds} "
                "round(s) of a Godwit and a direct pair of live migrations")
            try:
                out["continuity"] = continuity.measure(dep, hosts_of["continuity"], net_lvs,
                                                       net, cont_rounds, cont_path)
            except Exception as e:  # noqa: BLE001 - recorded; the other sections still run
                traceback.print_exc()
                out["continuity"] = {"error": _error(e)}
                print(f"bench: continuity section failed; service logs in {dep.dir}",
                      flush=True)
        if server:
            log(f"  cold over ssh: {cold_mib} MiB of random data, {cold_warm} warm-up move(s) "
                f"+ {cold_rounds} rounds of a Godwit move and an rsync")
            try:
                scratch = os.path.join(files, "rsync")
                os.makedirs(scratch)
                out["cold"] = cold_transfer.measure(dep, hosts_of["cold"], cold_paths, server,
                                                    scratch, cold_rounds, cold_mib,
                                                    warm=cold_warm)
            except Exception as e:  # noqa: BLE001 - recorded
                traceback.print_exc()
                out["cold"] = {"error": _error(e)}
                print(f"bench: cold-transfer section failed; service logs in {dep.dir}",
                      flush=True)
        if any(isinstance(v, dict) and "error" in v for v in out.values()):
            print(dep.logs(), flush=True)
        return out
    finally:
        # The agents first, then their daemons and sshd. (Most of the time is the
        # services' own stop, 3 to 7 s, then the database and the vhost.)
        t_stop = time.perf_counter()
        try:
            if dep is not None:
                dep.stop()
        finally:
            out["deployment_stop_s"] = round(time.perf_counter() - t_stop, 1)
            try:
                _stop_hosts(hosts_mod, lvs, server)
            finally:
                try:
                    continuity.teardown(net, net_lvs)
                finally:
                    shutil.rmtree(files, ignore_errors=True)
        out["teardown_s"] = round(time.perf_counter() - t_stop, 1)
        out["total_s"] = round(time.perf_counter() - t0, 1)
        out["loadavg_at_end"] = list(os.getloadavg())


def _stop_hosts(hosts_mod, lvs, server):
    try:
        if lvs:
            hosts_mod.stop_hosts(lvs)
    finally:
        if server is not None:
            server.stop()
