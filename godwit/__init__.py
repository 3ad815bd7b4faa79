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

# eventlet (imported by oslo.service, see above) loads its green DNS resolver,
# which imports all of dnspython's DNSSEC algorithms; dnspython's DSA module
# names cryptography's DSA key classes, which recent cryptography releases deprecate with
# a CryptographyDeprecationWarning per name, printed by every service at start.
# Godwit does no DNSSEC; silence exactly that category from that module.
try:
    from cryptography.utils import CryptographyDeprecationWarning as _CryptoDeprecation
except ImportError:  # no cryptography: dnspython skips its DSA support, no warning
    pass
else:
    _warnings.filterwarnings("ignore", category=_CryptoDeprecation,
                             module=r"dns\.dnssecalgs\.dsa")
