"""Godwit: a compute control plane that moves virtual machines between hosts.

This package is the small shared core of the three services (``api``,
``conductor`` and ``compute``): configuration, RPC plumbing, request context,
exceptions, database models and the migration state machine.
"""

__version__ = "0.1.0"
