"""Reboot (POST /servers/{id}/action {"reboot": {"type": ...}}) on fake hosts.

Nova's rules: a soft reboot needs an ACTIVE, idle server; a hard reboot also
takes a SHUTOFF server or one in ERROR. Refusals change nothing. The real
libvirt driver's reboot is tested in tests/real/test_libvirt_network.py.
"""

import json
import os

import pytest

from godwit.testing import APIError, fake_host, wait_for


def boot(c, name="r"):
    server = c.create_server(name, host="compute1")
    assert server["status"] == "ACTIVE", server
    return server["id"]


def domain(cloud, sid):
    return fake_host(cloud.conf.fake.hosts_path, "compute1").get("domains", sid)


def idle(c, sid):
    return c.wait_server(sid, lambda s: s["OS-EXT-STS:task_state"] is None)


def test_soft_and_hard_reboot_of_an_active_server(cloud):
    c = cloud.client
    sid = boot(c)
    c.action(sid, "reboot", {"type": "SOFT"})
    server = idle(c, sid)
    assert server["status"] == "ACTIVE"
    assert domain(cloud, sid)["reboots_soft"] == 1
    c.action(sid, "reboot", {"type": "hard"})  # Nova accepts the three spellings
    idle(c, sid)
    assert domain(cloud, sid)["reboots_hard"] == 1
    # Step events may land just after the step (godwit.events.Deferred).
    events = wait_for("the reboot's event", lambda: c.events(sid, action="reboot"))
    assert [(e["event"], e["result"]) for e in events] == [
        ("compute_reboot_instance", "Success")]


def test_hard_reboot_starts_a_stopped_server(cloud):
    c = cloud.client
    sid = boot(c)
    c.action(sid, "os-stop")
    c.wait_vm(sid, "SHUTOFF")
    with pytest.raises(APIError) as err:
        c.action(sid, "reboot", {"type": "SOFT"})
    assert err.value.status == 409
    assert "soft reboot needs an idle server in active" in err.value.message
    assert c.server(sid)["status"] == "SHUTOFF"
    c.action(sid, "reboot", {"type": "HARD"})
    c.wait_vm(sid, "ACTIVE")
    assert domain(cloud, sid)["power_state"] == 1


@pytest.mark.parametrize("body", [{"type": "WARM"}, {}, {"type": "SOFT", "force": True},
                                  None])
def test_bad_reboot_requests_change_nothing(cloud, body):
    c = cloud.client
    sid = boot(c)
    before = c.server(sid)
    with pytest.raises(APIError) as err:
        c.action(sid, "reboot", body)
    assert err.value.status == 400, err.value
    after = c.server(sid)
    assert (after["status"], after["OS-EXT-STS:task_state"], after["updated"]) == \
        (before["status"], before["OS-EXT-STS:task_state"], before["updated"])
    assert "reboots_soft" not in domain(cloud, sid)


def test_failed_reboot_is_reported_and_frees_the_server(cloud):
    c = cloud.client
    sid = boot(c)
    host_dir = fake_host(cloud.conf.fake.hosts_path, "compute1").root
    with open(os.path.join(host_dir, "faults.json"), "w") as f:
        json.dump(["reboot:fail:0:once"], f)
    c.action(sid, "reboot", {"type": "HARD"})
    wait_for("the failed reboot's event", lambda: any(
        e["result"] == "Error" for e in c.events(sid, action="reboot")))
    server = idle(c, sid)
    assert server["status"] == "ACTIVE"  # as it was: a failed reboot does not move it
    # The next reboot works: nothing was left holding the server.
    c.action(sid, "reboot", {"type": "HARD"})
    wait_for("a second reboot", lambda: (domain(cloud, sid) or {}).get("reboots_hard") == 1)
