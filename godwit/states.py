"""Every state name Godwit writes, in one place.

Instances carry Nova's three state fields (``vm_state``, ``task_state``,
``power_state``); migrations carry a ``status``. Code never spells these
strings itself: it imports the constants, and moves a migration only through
:mod:`godwit.state_machine`, whose phase table (:mod:`godwit.phases`) lists
every state a migration may be found in.
"""

# --- instance vm_state: what the user sees as the server's stable state ---
BUILDING = "building"          #: being created; no host may have it yet
ACTIVE = "active"              #: running (or paused) on its host
STOPPED = "stopped"            #: powered off on its host
PAUSED = "paused"              #: paused on its host
RESIZED = "resized"            #: moved by a resize, waiting for confirm or revert
ERROR = "error"                #: needs an operator; the fault says why
DELETED = "deleted"            #: gone; kept as a row for the audit trail

# --- instance task_state: the operation under way, None when idle ---
SCHEDULING = "scheduling"          #: choosing a host for a new server
SPAWNING = "spawning"              #: the host is creating the domain
MIGRATING = "migrating"            #: a live migration holds the server
DELETING = "deleting"              #: the server is being deleted
RESIZE_PREP = "resize_prep"        #: cold migration/resize is being prepared
RESIZE_MIGRATING = "resize_migrating"  #: disks are being copied
RESIZE_MIGRATED = "resize_migrated"    #: disks are on the destination
RESIZE_FINISH = "resize_finish"        #: the destination is starting the guest
RESIZE_REVERTING = "resize_reverting"  #: a revert is under way
POWERING_OFF = "powering-off"      #: os-stop in progress
POWERING_ON = "powering-on"        #: os-start in progress
REBOOTING = "rebooting"            #: a soft reboot in progress
REBOOTING_HARD = "rebooting_hard"  #: a hard reboot in progress

# --- instance power_state: what the hypervisor reports (Nova's integers) ---
NOSTATE = 0
RUNNING = 1
PAUSED_POWER = 3
SHUTDOWN = 4
CRASHED = 6
SUSPENDED = 7

# --- migration status ---
ACCEPTED = "accepted"              #: recorded by the API, pre-checks not yet passed
QUEUED = "queued"                  #: waiting for a free slot on the source host
PREPARING = "preparing"            #: destination being prepared (pre_live_migration)
RUNNING_MIGRATION = "running"      #: the hypervisor is transferring the guest
POST_MIGRATING = "post-migrating"  #: switch-over done, hosts being finalised
ROLLING_BACK = "rolling-back"      #: failed or aborted; the destination is being cleaned
COMPLETED = "completed"            #: guest on the destination, source cleaned
FAILED = "failed"                  #: rolled back; guest still on the source
ERROR_MIGRATION = "error"          #: refused by a check, or failed needing attention
CANCELLED = "cancelled"            #: aborted on request and rolled back
# Cold migration / resize (Nova's names).
PRE_MIGRATING = "pre-migrating"    #: destination claimed resources (prep_resize)
MIGRATING_COLD = "migrating"       #: source powering off and copying disks
FINISHED = "finished"              #: guest on the destination, awaiting confirm/revert
CONFIRMING = "confirming"          #: confirm under way (source being cleaned)
CONFIRMED = "confirmed"            #: confirmed; final
REVERTING = "reverting"            #: revert under way (destination torn down)
REVERTED = "reverted"              #: reverted; final

# Which statuses are final and which in progress, and every edge between them,
# is the phase table's to say: godwit.phases (FINAL, IN_PROGRESS).

# --- migration types (Nova's) ---
LIVE_MIGRATION = "live-migration"
COLD_MIGRATION = "migration"
RESIZE = "resize"
EVACUATION = "evacuation"

# --- instance actions and event results ---
ACTION_CREATE = "create"
ACTION_DELETE = "delete"
ACTION_LIVE_MIGRATION = "live-migration"
ACTION_MIGRATE = "migrate"
ACTION_RESIZE = "resize"
EVENT_SUCCESS = "Success"
EVENT_ERROR = "Error"

# --- services ---
SERVICE_CONDUCTOR = "godwit-conductor"
SERVICE_COMPUTE = "godwit-compute"
