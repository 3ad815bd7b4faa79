"""Who may do what: oslo.policy with Nova's defaults for these resources.

Moving servers, and looking at hosts and migrations, is for admins; owners
may manage their own servers. Operators override any rule in a policy file
(``[oslo_policy] policy_file``), as with Nova.
"""

from oslo_policy import policy

from godwit import exception

ADMIN = "role:admin"
OWNER_OR_ADMIN = "role:admin or project_id:%(project_id)s"

RULES = [
    policy.RuleDefault("admin_api", ADMIN, "Administrators."),
    policy.RuleDefault("admin_or_owner", OWNER_OR_ADMIN, "The project owning it, or admins."),
]


def _rule(name, check, description, method, path):
    return policy.DocumentedRuleDefault(name, check, description,
                                        [{"method": method, "path": path}])


RULES += [
    _rule("os_compute_api:servers:index", "rule:admin_or_owner", "List servers", "GET",
          "/servers"),
    _rule("os_compute_api:servers:index:get_all_tenants", "rule:admin_api",
          "List servers of all projects", "GET", "/servers?all_tenants=1"),
    _rule("os_compute_api:servers:show", "rule:admin_or_owner", "Show a server", "GET",
          "/servers/{id}"),
    _rule("os_compute_api:servers:create", "rule:admin_or_owner", "Create a server", "POST",
          "/servers"),
    _rule("os_compute_api:servers:create:forced_host", "rule:admin_api",
          "Create a server on a named host", "POST", "/servers"),
    _rule("os_compute_api:servers:delete", "rule:admin_or_owner", "Delete a server",
          "DELETE", "/servers/{id}"),
    _rule("os_compute_api:os-migrate-server:migrate_live", "rule:admin_api",
          "Live-migrate a server", "POST", "/servers/{id}/action (os-migrateLive)"),
    _rule("os_compute_api:os-migrate-server:migrate", "rule:admin_api",
          "Cold-migrate a server", "POST", "/servers/{id}/action (migrate)"),
    _rule("os_compute_api:servers:resize", "rule:admin_or_owner", "Resize a server", "POST",
          "/servers/{id}/action (resize)"),
    _rule("os_compute_api:servers:confirm_resize", "rule:admin_or_owner",
          "Confirm a resize or cold migration", "POST", "/servers/{id}/action (confirmResize)"),
    _rule("os_compute_api:servers:revert_resize", "rule:admin_or_owner",
          "Revert a resize or cold migration", "POST", "/servers/{id}/action (revertResize)"),
    _rule("os_compute_api:servers:stop", "rule:admin_or_owner", "Stop a server", "POST",
          "/servers/{id}/action (os-stop)"),
    _rule("os_compute_api:servers:start", "rule:admin_or_owner", "Start a server", "POST",
          "/servers/{id}/action (os-start)"),
    _rule("os_compute_api:os-migrations:index", "rule:admin_api", "List migrations", "GET",
          "/os-migrations"),
    _rule("os_compute_api:servers:migrations:index", "rule:admin_api",
          "List a server's migrations", "GET", "/servers/{id}/migrations"),
    _rule("os_compute_api:servers:migrations:show", "rule:admin_api",
          "Show a server's migration", "GET", "/servers/{id}/migrations/{mid}"),
    _rule("os_compute_api:servers:migrations:delete", "rule:admin_api",
          "Abort a live migration", "DELETE", "/servers/{id}/migrations/{mid}"),
    _rule("os_compute_api:servers:migrations:force_complete", "rule:admin_api",
          "Force a live migration to complete", "POST",
          "/servers/{id}/migrations/{mid}/action (force_complete)"),
    _rule("os_compute_api:os-instance-actions:list", "rule:admin_or_owner",
          "List a server's actions", "GET", "/servers/{id}/os-instance-actions"),
    _rule("os_compute_api:os-instance-actions:show", "rule:admin_or_owner",
          "Show a server's action", "GET", "/servers/{id}/os-instance-actions/{req}"),
    _rule("os_compute_api:os-instance-actions:events:details", "rule:admin_api",
          "See event tracebacks and hosts", "GET", "/servers/{id}/os-instance-actions/{req}"),
    _rule("os_compute_api:os-services:list", "rule:admin_api", "List services", "GET",
          "/os-services"),
    _rule("os_compute_api:os-services:update", "rule:admin_api", "Enable/disable services",
          "PUT", "/os-services/{id}"),
    _rule("os_compute_api:os-hypervisors:list", "rule:admin_api", "List hypervisors", "GET",
          "/os-hypervisors"),
    _rule("os_compute_api:os-flavor-manage:create", "rule:admin_api", "Create flavors",
          "POST", "/flavors"),
]


class Policy:
    def __init__(self, conf):
        self.enforcer = policy.Enforcer(conf)
        self.enforcer.register_defaults(RULES)

    def authorize(self, ctxt, action, target=None):
        target = target or {"project_id": ctxt.project_id}
        creds = ctxt.to_policy_values()
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
