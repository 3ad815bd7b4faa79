"""Godwit: a compute control plane that moves virtual machines between hosts.

This package is the small shared core of the three services (``api``,
``conductor`` and ``compute``): configuration, RPC plumbing, request context,
exceptions, database models and the migration state machine.
"""

__version__ = "0.1.0"

import warnings as _warnings

# oslo.messaging imports oslo.service's eventlet backend even though Godwit
# never uses eventlet (threading executor, nothing monkey-patched); its
# import-time deprecation warning says nothing about our code.
_warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
