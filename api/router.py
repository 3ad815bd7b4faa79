"""Every route of the API, on one screen."""

from api import admin, drains, servers, wsgi

V = "/v2.1"

ROUTES = {
    "/": {"GET": admin.versions},
    V: {"GET": admin.version},
    V + "/": {"GET": admin.version},
    V + "/servers": {"GET": servers.list_servers, "POST": servers.create_server},
    V + "/servers/detail": {"GET": servers.list_servers_detail},
    V + "/servers/{server_id}": {"GET": servers.show_server, "DELETE": servers.delete_server},
    V + "/servers/{server_id}/action": {"POST": servers.server_action},
    V + "/servers/{server_id}/migrations": {"GET": servers.list_server_migrations},
    # Godwit extension (docs/api.md): a live migration's checks and prediction.
    V + "/servers/{server_id}/live-migration-dry-run": {"POST": servers.live_migration_dry_run},
    V + "/servers/{server_id}/migrations/{migration_id}": {
        "GET": servers.show_server_migration, "DELETE": servers.abort_server_migration},
    V + "/servers/{server_id}/migrations/{migration_id}/action": {
        "POST": servers.server_migration_action},
    # Godwit extension (docs/api.md): any migration's timeline, at any microversion.
    V + "/servers/{server_id}/migrations/{migration_id}/timeline": {
        "GET": servers.show_migration_timeline},
    V + "/servers/{server_id}/os-instance-actions": {"GET": servers.list_instance_actions},
    V + "/servers/{server_id}/os-instance-actions/{request_id}": {
        "GET": servers.show_instance_action},
    V + "/os-migrations": {"GET": admin.list_migrations},
    V + "/flavors": {"GET": admin.list_flavors},
    V + "/flavors/detail": {"GET": admin.list_flavors_detail},
    V + "/flavors/{flavor_id}": {"GET": admin.show_flavor},
    V + "/os-services": {"GET": admin.list_services},
    # Before 2.53 {service_id} is an action: enable, disable, disable-log-reason,
    # force-down; from 2.53 the service's uuid.
    V + "/os-services/{service_id}": {"PUT": admin.update_service},
    V + "/os-hypervisors": {"GET": admin.list_hypervisors},
    V + "/os-hypervisors/detail": {"GET": admin.list_hypervisors_detail},
    V + "/os-hypervisors/{hypervisor_id}": {"GET": admin.show_hypervisor},
    # Godwit extension (docs/api.md): server-side host drains, at any microversion.
    V + "/os-host-drains": {"GET": drains.list_drains, "POST": drains.create_drain},
    V + "/os-host-drains/{drain_id}": {"GET": drains.show_drain,
                                       "DELETE": drains.cancel_drain},
}

# Answered without authentication (as Nova's version documents are).
PUBLIC = {"/", V}


def build_app(compute_api, conf=None):
    """The WSGI application, wrapped for ``[api] auth_strategy``."""
    return wsgi.build(compute_api, ROUTES, PUBLIC, conf or compute_api.conf)
