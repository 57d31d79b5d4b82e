"""MkDocs hook: the API reference pages, generated from the docstrings at build time.

Each page is one ``::: identifier`` block that mkdocstrings' Python handler renders from the
source (griffe reads it statically: nothing is imported, so no framework is needed to build the
site). The pages exist only in the build; add a module here to give it a page, and a line to
``nav`` in mkdocs.yml.

The docstrings cross-reference in Sphinx's roles (``:class:`Detections```), which Markdown leaves
as they are: the rendered role keeps its code span and loses the role's name.
"""

from __future__ import annotations

import re
from typing import Any

from mkdocs.structure.files import File, Files

# page (under docs/) -> (title, identifier, extra mkdocstrings options)
PAGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "reference/safepredictor.md": ("SafePredictor", "safepredict.SafePredictor", {}),
    "reference/safeinferencer.md": ("SafeInferencer", "safepredict.SafeInferencer", {}),
    "reference/detections.md": ("Detections", "safepredict.detections.Detections", {}),
    "reference/contract.md": ("safepredict.contract", "safepredict.contract", {"members_order": "source"}),
    "reference/errors.md": ("safepredict.errors", "safepredict.errors", {"members_order": "source"}),
    "reference/lock.md": ("safepredict.lock", "safepredict.lock", {}),
    "reference/monitor.md": ("safepredict.monitor", "safepredict.monitor", {}),
}


def page_text(title: str, identifier: str, options: dict[str, Any]) -> str:
    lines = [f"# {title}", "", f"::: {identifier}"]
    if options:
        lines.append("    options:")
        lines += [f"      {key}: {value}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: Any) -> Files:
    for path, (title, identifier, options) in PAGES.items():
        files.append(File.generated(config, path, content=page_text(title, identifier, options)))
    return files


# A Sphinx role followed by the code span Markdown made of its target.
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):<code>(~?)([^<]+)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"  # `~a.b.C` shows as `C`


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    if not page.file.src_uri.startswith("reference/"):
        return html
    return _ROLE.sub(_code, html)
