"""Looking things up by name: one policy for every registry (see :mod:`.ops.names`).

The policy lives at the bottom of the package, beside the math table, so that the table (which
imports nothing from the package) follows it too.
"""

from __future__ import annotations

from .ops.names import canonical_name, lookup

__all__ = ["canonical_name", "lookup"]
