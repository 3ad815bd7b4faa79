"""Exceptions shared by all services.

Each carries an HTTP ``code`` so the API can answer with it, and a message
template that names the cause and, where there is one, what to do about it.
Exceptions cross RPC by name (oslo.messaging re-raises them on the caller
when this module is in ``allowed_remote_exmods``), so the API can turn a
conductor's refusal into the right HTTP status.

Every exception that may cross RPC lives here, in this one module: the
receiver rebuilds it as ``<module>.<class>(message, **kwargs)``, and only
modules listed in ``godwit.rpc.ALLOWED_EXMODS`` are rebuilt (any other
arrives as an opaque ``RemoteError``, its class and status lost). So a
subclass's ``__init__`` must accept ``(message, **self.kwargs)``;
tests/unit/test_remote_exceptions.py round-trips every class.
"""


def message_of(error):
    """The message of ``error`` without a remote traceback.

    oslo.messaging re-raises a remote exception with its traceback appended to
    str(); people should see the reason, and logs keep the traceback.
    """
    message = getattr(error, "message", None)
    if not isinstance(message, str) or not message:
        message = str(error)
    return message.split("\nTraceback (most recent call last):")[0].strip()


class GodwitException(Exception):
    msg_fmt = "An unknown error occurred."
    code = 500

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError):
                message = self.msg_fmt
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message


class Invalid(GodwitException):
    code = 400
    msg_fmt = "Invalid request: %(reason)s"


class Forbidden(GodwitException):
    code = 403
    msg_fmt = "Policy does not allow %(action)s to be performed."


class NotFound(GodwitException):
    code = 404
    msg_fmt = "Resource could not be found."


class Conflict(GodwitException):
    code = 409
    msg_fmt = "Conflict: %(reason)s"


class ServiceUnavailable(GodwitException):
    code = 503
    msg_fmt = "%(reason)s"


# --- not found ---
class InstanceNotFound(NotFound):
    msg_fmt = "Instance %(instance_id)s could not be found."


class MigrationNotFound(NotFound):
    msg_fmt = "Migration %(migration_id)s could not be found."


class MigrationNotFoundForInstance(NotFound):
    msg_fmt = "Migration %(migration_id)s is not a migration of instance %(instance_id)s."


class FlavorNotFound(NotFound):
    msg_fmt = "Flavor %(flavor_id)s could not be found."


class ComputeHostNotFound(NotFound):
    msg_fmt = ("Compute host %(host)s could not be found. 'godwit service list' shows the "
               "compute hosts that exist.")


class ServiceNotFound(NotFound):
    msg_fmt = "Service %(service_id)s could not be found."


# --- bad requests ---
class DestinationIsSource(Invalid):
    msg_fmt = ("The requested destination %(host)s is the host the instance already runs on; "
               "name another host, or give none and let the scheduler choose.")


class DestinationHostUnknown(Invalid):
    msg_fmt = ("Compute host %(host)s could not be found. 'godwit service list' shows the "
               "compute hosts that exist.")


class ComputeServiceUnavailable(Invalid):
    msg_fmt = ("Compute service of %(host)s is down (last heartbeat %(age)s ago). Start "
               "godwit-compute on that host, or choose another destination.")


class ComputeServiceDisabled(Invalid):
    msg_fmt = ("Compute service of %(host)s is disabled%(reason)s. Enable it with "
               "'godwit service enable %(host)s' or choose another destination.")


class MigrationPreCheckError(Invalid):
    msg_fmt = "Migration pre-check error: %(reason)s"


class PreCheckNoAnswer(MigrationPreCheckError):
    """A host did not answer its pre-check: not a refusal, nothing was asked of it."""


class NoValidHost(Invalid):
    msg_fmt = "No valid host was found. %(reason)s"


class InvalidMigrationTransition(GodwitException):
    code = 409
    msg_fmt = ("A %(migration_type)s migration cannot move from status %(old)s to %(new)s.")


class InvalidMigrationState(Invalid):
    msg_fmt = ("Migration %(migration_id)s of instance %(instance_id)s is in status "
               "%(status)s; %(action)s needs %(allowed)s.")


class FlavorExists(Conflict):
    msg_fmt = "Flavor with name or id %(name)s already exists."


class InvalidHostName(Invalid):
    msg_fmt = ("Refusing host name %(host)r: %(reason)s. A host must be a DNS name, an "
               "IPv4 address or an IPv6 literal.")


class InvalidUUID(Invalid):
    msg_fmt = "Refusing %(what)s %(value)r: it is not a uuid (8-4-4-4-12 hex digits)."


# --- conflicts ---
class InstanceInvalidState(Conflict):
    msg_fmt = ("Cannot '%(action)s' instance %(instance_id)s while it is in %(attr)s "
               "%(state)s.%(hint)s")

    def __init__(self, message=None, hint="", **kwargs):
        # Idempotent: RPC rebuilds the exception with the hint it stored.
        super().__init__(message, hint=(" " + hint.lstrip() if hint.strip() else ""),
                         **kwargs)


class InstanceBusy(Conflict):
    msg_fmt = ("Instance %(instance_id)s is busy with task %(task_state)s; wait for it to "
               "finish (see 'godwit server show %(instance_id)s').")


class ConcurrentUpdate(Conflict):
    msg_fmt = ("%(what)s changed while this request ran (expected %(expected)s, found "
               "%(found)s); read it again and retry if still wanted.")


# --- host-side failures (raised by drivers, carried back over RPC) ---
class HypervisorError(GodwitException):
    msg_fmt = "Hypervisor error on %(host)s: %(reason)s"


class InjectedFault(GodwitException):
    msg_fmt = "Injected fault at step %(step)s on host %(host)s."


class InstanceExists(Conflict):
    msg_fmt = "Instance %(instance_id)s already exists on host %(host)s."


class HostCapacityExceeded(Invalid):
    msg_fmt = "%(host)s lacks %(resource)s: %(needed)s needed, %(free)s free."


# --- disks (compute/disk.py) and disk transfer between hosts (compute/transfer/) ---
class QemuImgNotFound(GodwitException):
    msg_fmt = ("%(binary)s is not installed on this host (not found on PATH); install the "
               "qemu-utils package (apt-get install qemu-utils).")


class DiskNotFound(NotFound):
    msg_fmt = "Disk image %(path)s does not exist."


class InvalidDiskRequest(Invalid):
    msg_fmt = "Invalid disk request: %(reason)s"


class DiskOperationFailed(GodwitException):
    msg_fmt = "%(command)s failed with exit code %(code)s: %(stderr)s"


class DiskShrinkRefused(Invalid):
    msg_fmt = ("cannot shrink disk %(path)s from %(current_gib)s GiB to %(new_gib)s GiB; "
               "choose a flavor with at least %(min_gib)s GiB root disk")


class TransferError(GodwitException):
    msg_fmt = "Disk transfer failed: %(reason)s"


class InvalidTransferHost(TransferError):
    code = 400
    msg_fmt = ("Refusing to transfer to host %(host)r: %(reason)s. A host must be a DNS name, "
               "an IPv4 address or an IPv6 literal.")


class InvalidTransferPath(TransferError):
    code = 400
    msg_fmt = "Refusing transfer path %(path)r: %(reason)s"


class InvalidTransferConfig(TransferError):
    msg_fmt = "[transfer] %(option)s = %(value)r cannot be used: %(reason)s"


class TransferDriverNotFound(TransferError):
    msg_fmt = ("Cannot load transfer driver %(name)r (%(reason)s); entry points in "
               "godwit.transfer_drivers: %(available)s. Set [transfer] driver to one of them.")


class TransferToolNotFound(TransferError):
    msg_fmt = ("%(tool)s is not installed on this host (not found on PATH); install the "
               "%(package)s package.")


class TransferFailed(TransferError):
    msg_fmt = "%(action)s failed with exit code %(code)s: %(stderr)s%(hint)s"

    def __init__(self, message=None, hint="", **kwargs):
        # Idempotent: RPC rebuilds the exception with the hint it stored.
        super().__init__(message, hint=(" " + hint.lstrip() if hint.strip() else ""),
                         **kwargs)


# --- host drivers (compute/vif, compute/volume, compute/firewall) ---
class VifPlugFailed(GodwitException):
    msg_fmt = "Cannot %(action)s VIF %(vif)s on %(host)s: %(reason)s"


class VolumeConnectFailed(GodwitException):
    msg_fmt = "Cannot connect volume %(volume_id)s on %(host)s: %(reason)s"


class FirewallError(GodwitException):
    msg_fmt = "Firewall error on %(host)s: %(reason)s"


# --- crash safety ---
class MigrationFenced(ConcurrentUpdate):
    msg_fmt = ("Migration %(migration_id)s is now driven by another conductor (epoch "
               "%(found)s, this one holds %(epoch)s); this one stops touching it.")


class StaleEpoch(Conflict):
    msg_fmt = ("Step %(step)s of migration %(migration_id)s refused on %(host)s: it carries "
               "epoch %(epoch)s but epoch %(current)s has been seen; a newer conductor "
               "drives this migration.")


class GuestRunningHere(Conflict):
    msg_fmt = ("Refusing %(action)s of instance %(instance_id)s on %(host)s: its domain runs "
               "here (%(state)s), so it is the guest, not a leftover.")


class MoveUnresolved(Conflict):
    msg_fmt = ("Instance %(instance_id)s cannot be %(action)s: its migration %(migration_id)s "
               "is unresolved (%(reason)s). Starting it could run a second copy; wait until "
               "the migration ends (godwit migration show %(migration_id)s).")


class StepInProgress(Conflict):
    """A host step still runs; the caller asks again later for its outcome."""
    msg_fmt = "Step %(step)s of migration %(migration_id)s is still running on %(host)s."


class HostUnreachable(GodwitException):
    """A host the move needs could not be asked (its service is down, or it did
    not answer by the phase's deadline)."""
    code = 503
    msg_fmt = "Compute host %(host)s could not be asked (%(why)s)."


class AbortRequested(Conflict):
    """The user asked to abort while the step that would carry the move on ran."""
    msg_fmt = "Migration %(migration_id)s was asked to abort."


#: Refusals: the request cannot be carried out as asked (bad input, unknown
#: id, wrong state, a host's pre-check said no). RPC endpoints mark them as
#: expected (godwit.rpc.refusals), so the service answering them logs no
#: traceback; the caller gets the exception and its 4xx status.
REFUSALS = (Invalid, Forbidden, NotFound, Conflict)
