"""A griffe extension for the docs site: Sphinx roles in docstrings become Markdown links.

The docstrings cross-reference with Sphinx roles (``:func:`~mlp_accel.fit```), which read well
in ``help()``; mkdocstrings renders Markdown, where a role would show as raw text. Each role is
rewritten to an autorefs link (``[fit][mlp_accel.fit]``), so a reference to a missing object
fails ``mkdocs build --strict``; private and outside names stay code spans.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):`(~?)([\w.]+)`")
# A role names its target relative to the package's public names; autorefs needs the full
# path mkdocstrings rendered it under.
_LINKED_PREFIXES = ("mlp_accel.",)


def _rewrite(text: str, owner: str) -> str:
    def link(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        private = any(part.startswith("_") for part in target.split("."))
        if target.startswith(_LINKED_PREFIXES) and not private:
            return f"[`{shown}`][{target}]"
        return f"`{shown}`"

    return _ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every loaded docstring to Markdown."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _rewrite(obj.docstring.value, obj.path)
