"""How every command reports: text for people, or ``--json`` for programs.

With ``--json`` the report is one JSON document on stdout and everything else (progress, "wrote
...") goes to stderr, so ``safepredict COMMAND --json > report.json`` always yields valid JSON.
The exit code says the same as the document (see :mod:`safepredict.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import attrs

from safepredict.findings import jsonable as plain_json

__all__ = ["add_json_option", "jsonable", "message_stream", "print_json"]


def add_json_option(parser: argparse.ArgumentParser, what: str = "the report") -> None:
    """Add ``--json`` to a command's parser."""
    parser.add_argument(
        "--json", action="store_true", help=f"print {what} as one JSON document on stdout (messages go to stderr)"
    )


def message_stream(args: argparse.Namespace) -> TextIO:
    """Where a command's human-readable lines go: stdout, or stderr when stdout carries the JSON."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def jsonable(value: Any) -> Any:
    """``value`` as JSON values: attrs instances as dicts of their fields, the rest as
    :func:`safepredict.findings.jsonable` makes it (numpy scalars, tuples, sets; anything else as text)."""
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return plain_json(value)


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    json.dump(jsonable(data), sys.stdout, indent=2)
    sys.stdout.write("\n")
