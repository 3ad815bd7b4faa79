"""Who may do what: oslo.policy with Nova's rule names and defaults.

The rule names are Nova's, so a Nova ``policy.yaml`` for these APIs works
unchanged. Defaults follow Nova's project-scoped personas: moving servers
(live and cold migration, to a named host or not), looking at or steering
migrations, services and hypervisors is for admins; members of a project
manage their own servers (create, delete, resize, confirm, revert, stop,
start); readers may look. Nova's newer "project manager" persona (which may
migrate without naming a host) is not modelled: those rules stay admin-only.
Operators override any rule in a policy file (``[oslo_policy] policy_file``).
"""

from oslo_policy import policy

from godwit import exception

ADMIN = "rule:context_is_admin"
PROJECT_MEMBER_OR_ADMIN = "rule:project_member_or_admin"
PROJECT_READER_OR_ADMIN = "rule:project_reader_or_admin"

RULES = [
    policy.RuleDefault("context_is_admin", "role:admin", "Administrators."),
    policy.RuleDefault("admin_api", "is_admin:True", "Legacy rule: administrators."),
    policy.RuleDefault("admin_or_owner", "is_admin:True or project_id:%(project_id)s",
                       "Legacy rule: the owning project, or administrators."),
    policy.RuleDefault("project_member_api", "role:member and project_id:%(project_id)s",
                       "Members of the owning project."),
    policy.RuleDefault("project_reader_api", "role:reader and project_id:%(project_id)s",
                       "Readers of the owning project."),
    policy.RuleDefault("project_member_or_admin",
                       "rule:project_member_api or rule:context_is_admin",
                       "Members of the owning project, or administrators."),
    policy.RuleDefault("project_reader_or_admin",
                       "rule:project_reader_api or rule:context_is_admin",
                       "Readers of the owning project, or administrators."),
]


def _rule(name, check, description, method, path, deprecated_rule=None):
    return policy.DocumentedRuleDefault(name, check, description,
                                        [{"method": method, "path": path}],
                                        deprecated_rule=deprecated_rule)


MIGRATE_LIVE = "os_compute_api:os-migrate-server:migrate_live"
MIGRATE = "os_compute_api:os-migrate-server:migrate"
# As in Nova: overriding migrate_live (or migrate) in a policy file also
# governs the ':host' rule unless that one is overridden too.
_SAME_AS_MIGRATE_LIVE = policy.DeprecatedRule(
    MIGRATE_LIVE, ADMIN, deprecated_reason="Live migration to a named host has its own "
    "rule; an override of migrate_live applies to it until it is overridden itself.",
    deprecated_since="0.1.0")
_SAME_AS_MIGRATE = policy.DeprecatedRule(
    MIGRATE, ADMIN, deprecated_reason="Cold migration to a named host has its own rule; "
    "an override of migrate applies to it until it is overridden itself.",
    deprecated_since="0.1.0")

RULES += [
    _rule("os_compute_api:servers:index", PROJECT_READER_OR_ADMIN, "List servers", "GET",
          "/servers"),
    _rule("os_compute_api:servers:detail", PROJECT_READER_OR_ADMIN, "List servers in detail",
          "GET", "/servers/detail"),
    _rule("os_compute_api:servers:index:get_all_tenants", ADMIN,
          "List servers of all projects", "GET", "/servers?all_tenants=1"),
    _rule("os_compute_api:servers:detail:get_all_tenants", ADMIN,
          "List servers of all projects in detail", "GET", "/servers/detail?all_tenants=1"),
    _rule("os_compute_api:servers:allow_all_filters", ADMIN,
          "Filter servers by any field (others get name, status, ... only)", "GET",
          "/servers"),
    _rule("os_compute_api:servers:show", PROJECT_READER_OR_ADMIN, "Show a server", "GET",
          "/servers/{id}"),
    _rule("os_compute_api:servers:create", PROJECT_MEMBER_OR_ADMIN, "Create a server",
          "POST", "/servers"),
    _rule("os_compute_api:servers:create:forced_host", ADMIN,
          "Create a server on a named host", "POST", "/servers"),
    _rule("os_compute_api:servers:delete", PROJECT_MEMBER_OR_ADMIN, "Delete a server",
          "DELETE", "/servers/{id}"),
    _rule(MIGRATE_LIVE, ADMIN, "Live-migrate a server, the scheduler choosing the host",
          "POST", "/servers/{id}/action (os-migrateLive)"),
    _rule(MIGRATE_LIVE + ":host", ADMIN, "Live-migrate a server to a named host", "POST",
          "/servers/{id}/action (os-migrateLive)", _SAME_AS_MIGRATE_LIVE),
    _rule(MIGRATE, ADMIN, "Cold-migrate a server, the scheduler choosing the host", "POST",
          "/servers/{id}/action (migrate)"),
    _rule(MIGRATE + ":host", ADMIN, "Cold-migrate a server to a named host", "POST",
          "/servers/{id}/action (migrate)", _SAME_AS_MIGRATE),
    _rule("os_compute_api:servers:resize", PROJECT_MEMBER_OR_ADMIN, "Resize a server",
          "POST", "/servers/{id}/action (resize)"),
    _rule("os_compute_api:servers:confirm_resize", PROJECT_MEMBER_OR_ADMIN,
          "Confirm a resize or cold migration", "POST", "/servers/{id}/action (confirmResize)"),
    _rule("os_compute_api:servers:revert_resize", PROJECT_MEMBER_OR_ADMIN,
          "Revert a resize or cold migration", "POST", "/servers/{id}/action (revertResize)"),
    _rule("os_compute_api:servers:stop", PROJECT_MEMBER_OR_ADMIN, "Stop a server", "POST",
          "/servers/{id}/action (os-stop)"),
    _rule("os_compute_api:servers:start", PROJECT_MEMBER_OR_ADMIN, "Start a server", "POST",
          "/servers/{id}/action (os-start)"),
    _rule("os_compute_api:servers:reboot", PROJECT_MEMBER_OR_ADMIN, "Reboot a server", "POST",
          "/servers/{id}/action (reboot)"),
    _rule("os_compute_api:os-migrations:index", ADMIN, "List migrations", "GET",
          "/os-migrations"),
    _rule("os_compute_api:servers:migrations:index", ADMIN,
          "List a server's in-progress live migrations", "GET", "/servers/{id}/migrations"),
    _rule("os_compute_api:servers:migrations:show", ADMIN,
          "Show a server's in-progress live migration", "GET",
          "/servers/{id}/migrations/{mid}"),
    _rule("os_compute_api:servers:migrations:delete", ADMIN, "Abort a live migration",
          "DELETE", "/servers/{id}/migrations/{mid}"),
    _rule("os_compute_api:servers:migrations:force_complete", ADMIN,
          "Force a live migration to complete", "POST",
          "/servers/{id}/migrations/{mid}/action (force_complete)"),
    _rule("os_compute_api:servers:migrations:set_speed", ADMIN,
          "Change a running live migration's bandwidth (Godwit extension)", "POST",
          "/servers/{id}/migrations/{mid}/action (set-speed)"),
    _rule("os_compute_api:servers:migrations:set_downtime", ADMIN,
          "Change a running live migration's max downtime (Godwit extension)", "POST",
          "/servers/{id}/migrations/{mid}/action (set-downtime)"),
    _rule("os_compute_api:os-instance-actions:list", PROJECT_READER_OR_ADMIN,
          "List a server's actions", "GET", "/servers/{id}/os-instance-actions"),
    _rule("os_compute_api:os-instance-actions:show", PROJECT_READER_OR_ADMIN,
          "Show a server's action", "GET", "/servers/{id}/os-instance-actions/{req}"),
    _rule("os_compute_api:os-instance-actions:events", ADMIN,
          "See an action's events before 2.51, and each event's traceback and host", "GET",
          "/servers/{id}/os-instance-actions/{req}"),
    _rule("os_compute_api:os-instance-actions:events:details", ADMIN,
          "See each event's details (2.84)", "GET", "/servers/{id}/os-instance-actions/{req}"),
    _rule("os_compute_api:os-services:list", ADMIN, "List services", "GET", "/os-services"),
    _rule("os_compute_api:os-services:update", ADMIN, "Enable/disable services", "PUT",
          "/os-services/{id}"),
    _rule("os_compute_api:os-hypervisors:list", ADMIN, "List hypervisors", "GET",
          "/os-hypervisors"),
    _rule("os_compute_api:os-hypervisors:list-detail", ADMIN, "List hypervisors in detail",
          "GET", "/os-hypervisors/detail"),
    _rule("os_compute_api:os-hypervisors:show", ADMIN, "Show a hypervisor", "GET",
          "/os-hypervisors/{id}"),
    _rule("os_compute_api:os-flavor-manage:create", ADMIN, "Create flavors", "POST",
          "/flavors"),
    # Godwit extension: server-side host drains (docs/host-drain.md).
    _rule("os_compute_api:os-host-drains:create", ADMIN,
          "Drain a host: disable it and move every guest away", "POST", "/os-host-drains"),
    _rule("os_compute_api:os-host-drains:show", ADMIN, "List and show host drains", "GET",
          "/os-host-drains"),
    _rule("os_compute_api:os-host-drains:delete", ADMIN, "Cancel a host drain", "DELETE",
          "/os-host-drains/{id}"),
]


class Policy:
    def __init__(self, conf):
        self.enforcer = policy.Enforcer(conf)
        self.enforcer.register_defaults(RULES)

    def authorize(self, ctxt, action, target=None):
        target = target or {"project_id": ctxt.project_id}
        creds = ctxt.to_policy_values()
        creds["is_admin"] = ctxt.is_admin
        if not self.enforcer.authorize(action, target, creds, do_raise=False):
            raise exception.Forbidden(action=action)

    def check(self, ctxt, action, target=None):
        try:
            self.authorize(ctxt, action, target)
            return True
        except exception.Forbidden:
            return False


def list_rules():
    """Entry point for oslopolicy-sample-generator."""
    return RULES
