"""compute service package."""

import godwit  # noqa: F401  (first: installs godwit's warning filters)
