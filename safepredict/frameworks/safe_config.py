"""Read mmengine's config language without running it.

mmengine *executes* a ``.py`` config (``eval`` of the whole file) and imports the modules its
``custom_imports`` names, so ``Config.fromstring(checkpoint['meta']['cfg'], '.py')`` runs
whatever code the author of a checkpoint put there. This module parses the text with
:mod:`ast` and evaluates a small data language itself, never with ``exec``, ``eval`` or
``compile``: literals, ``dict(...)``, displays, names assigned earlier, ``_base_.x``,
arithmetic and string formatting of plain values, subscripts, assignment to keys. The
semantics are mmengine 0.10's ``Config._file2dict``: ``_base_`` inheritance (relative paths,
``package::path``), ``_delete_``, ``{{_base_.x}}``, ``{{ fileDirname }}``,
``{{$ENV:default}}``, ``_deprecation_``. Everything outside the language raises
:class:`~safepredict.errors.UntrustedCodeError`, naming the file and line.

Values are plain Python data only (no object the config could call into), and every read is
charged for what it costs (:class:`Budget`: work, files and text across all its ``_base_``
files, values as trees with sharing expanded, hashing, iteration, wide-integer arithmetic) and
runs in a child process under memory, CPU and wall limits (:mod:`safepredict.frameworks.guard`),
so a hostile text ends in a typed error, never in code, a hang or an exhausted memory.

The language, key by key, is in docs/security.md.
"""

from __future__ import annotations

import ast
import builtins
import copy
import hashlib
import json
import logging
import operator
import os
import os.path as osp
import re
import reprlib
import stat
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from safepredict.errors import ConfigError, FrameworkNotInstalled, SafePredictError, UntrustedCodeError

__all__ = [
    "OPENMMLAB_SCOPES",
    "Budget",
    "check_mmengine_types",
    "evaluate_file",
    "evaluate_text",
    "load_file",
    "load_text",
    "read_config_bytes",
    "tree_size",
    "trust_fix",
    "untrusted",
]

logger = logging.getLogger("safepredict")

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
DEPRECATION_KEY = "_deprecation_"
RESERVED_KEYS = ("filename", "text", "pretty_text", "env_variables")

# Limits far above any real config and far below what would exhaust a machine: a hostile text
# meets them long before memory or time. Measured over mmdet 3.3's zoo (811 configs read), the
# most any read takes is 47,015 units of work, 10 files, 42 kB of text and a config of 7,810
# values. They hold for one whole read, the file and all its _base_ files together. What they
# miss, the child-process guard (safepredict.frameworks.guard) stops.
MAX_SOURCE_CHARS = 1_000_000  # one file
MAX_ITEMS = 1_000_000  # elements of one string, list, tuple, dict or set
MAX_INT_BITS = 1 << 16
MAX_WORK = 2_000_000  # units of work of one read: values created, copied, hashed, iterated
MAX_FORMAT_WIDTH = 10_000
MAX_BASE_DEPTH = 32
MAX_BASE_FILES = 256  # files read for one config, every reference counted (a DAG re-reads)
MAX_TOTAL_CHARS = 8_000_000  # text of all of them together
MAX_VALUE_NODES = 200_000  # a value as a tree, a shared child counted at each reference
MAX_VALUE_DEPTH = 100
MAX_TEMPLATES = 1_000  # `{{` substitution sites in one file
_TEMPLATE_WINDOW = 4096  # characters one `{{...}}` substitution may span

_SUFFIXES = (".py", ".json", ".yaml", ".yml")
# Attributes of mmengine's ConfigDict (a dict, an addict.Dict) that are Python, not keys:
# ``cfg.update`` there is the bound method. Reading one is a step towards calling it.
_CONFIGDICT_ATTRS = frozenset(dir(dict)) | {
    "build_lazy",
    "deepcopy",
    "freeze",
    "lazy",
    "merge",
    "scope",
    "to_dict",
    "unfreeze",
}
# The registry scopes mmengine may import (``import_module(f"{scope}.registry")``) for a
# ``default_scope``, a ``_scope_`` or a ``scope.Name`` type: OpenMMLab's own packages.
OPENMMLAB_SCOPES = frozenset(
    {
        "mmaction",
        "mmcls",
        "mmcv",
        "mmdet",
        "mmdet3d",
        "mmedit",
        "mmengine",
        "mmocr",
        "mmpose",
        "mmpretrain",
        "mmrazor",
        "mmrotate",
        "mmseg",
        "mmselfsup",
        "mmtrack",
        "mmyolo",
    }
)
_CONSTRUCTORS: dict[str, Callable[..., Any]] = {"dict": dict, "list": list, "tuple": tuple, "set": set}
# Built-in functions a config may call: pure, on plain data, their results materialised as lists
# (Python's range/enumerate/zip objects are lazy; a config iterates them or stores them, and only
# the first is plain data) and counted against the limits like every other value.
_FUNCTIONS = frozenset({"range", "enumerate", "zip", "len"})
# Dict methods a config may call (mmdet's zoo edits base models with them): see _Evaluator.method.
_METHODS = frozenset({"pop", "get", "update"})


# --------------------------------------------------------------------------- errors


def trust_fix(source: str, sha256: str | None = None) -> str:
    """How to load ``source`` with the framework's own loader, in words."""
    pin = f"pin its sha256 {sha256} in the lock" if sha256 else "pin its sha256 in the lock"
    return (
        f"if you trust {source} (you wrote it, or you read it), load it with trust=True "
        f"(SafePredictor.from_checkpoint(path, trust=True)), pass --trust on the command line, or {pin}"
    )


def untrusted(
    what: str,
    source: str,
    *,
    line: int | None = None,
    sha256: str | None = None,
    loader: str = "mmengine's Config.fromfile",
) -> UntrustedCodeError:
    """The :class:`UntrustedCodeError` for ``what`` found in ``source`` (at ``line``)."""
    where = f"{source}, line {line}" if line else source
    return UntrustedCodeError(
        f"{where}: {what}. Loading it with {loader} would run code its author wrote; "
        "safepredict reads configs without running them and refuses this one",
        expected="plain config data (literals, dict(...), names, _base_)",
        found=what,
        source=source,
        fix=trust_fix(source, sha256),
        details={"line": line, "construct": what, "sha256": sha256},
    )


def _limit(source: str, message: str, limit: str) -> ConfigError:
    return ConfigError(
        f"config {source}: {message}",
        source=source,
        details={"limit": limit},
        fix="a real config is far below this limit; if this file is yours, load it with trust=True",
    )


class Budget:
    """The cost of one whole read (a config and all its ``_base_`` files) against the limits.

    ``work`` counts units of work, not sizes of results: every value created or copied, every
    element hashed, iterated (a comprehension iteration its filter drops included) or merged,
    each shared child at each of its references. ``files`` and ``chars`` count every base file
    read, a base reached twice counted twice, as mmengine and fvcore read it twice.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.work = 0
        self.files = 0
        self.chars = 0

    def file(self, source: str, chars: int) -> None:
        self.files += 1
        self.chars += chars
        if self.files > MAX_BASE_FILES:
            raise _limit(self.source, f"reading {source} makes more than {MAX_BASE_FILES} config files read "
                         "through _base_ for one config (safepredict's limit)", "base files")
        if self.chars > MAX_TOTAL_CHARS:
            raise _limit(self.source, f"reading {source} makes more than {MAX_TOTAL_CHARS} characters of config "
                         "text read through _base_ for one config (safepredict's limit)", "base text")

    def spend(self, units: int, where: str | None = None) -> None:
        self.work += units
        if self.work > MAX_WORK:
            raise _limit(where or self.source, f"reading the config takes more than {MAX_WORK} units of work "
                         "(values created, copied, hashed or iterated; safepredict's limit)", "work")


class _TooBig(Exception):
    pass


def tree_size(value: Any, cap: int | None = None, depth_cap: int | None = None) -> int:
    """The nodes of ``value`` as a tree (a shared child counted at every reference), at most ``cap``.

    Raises ``_TooBig`` past ``cap`` nodes (default :data:`MAX_VALUE_NODES`) or ``depth_cap`` levels
    (:data:`MAX_VALUE_DEPTH`); the work is at most ``cap`` steps whatever the sharing, so measuring
    cannot itself blow up.
    """
    cap = MAX_VALUE_NODES if cap is None else cap
    depth_cap = MAX_VALUE_DEPTH if depth_cap is None else depth_cap
    count = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > cap:
            raise _TooBig(f"more than {cap} values (a shared value counted at each use)")
        if isinstance(node, dict):
            if depth >= depth_cap:
                raise _TooBig(f"nested deeper than {depth_cap} levels")
            stack.extend((k, depth + 1) for k in node if isinstance(k, tuple | frozenset))
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            if depth >= depth_cap:
                raise _TooBig(f"nested deeper than {depth_cap} levels")
            stack.extend((v, depth + 1) for v in node)
    return count


def measure(value: Any, budget: Budget, source: str, what: str = "the config") -> int:
    """``tree_size(value)``, spent from ``budget``; a :class:`ConfigError` past the limits."""
    try:
        size = tree_size(value)
    except _TooBig as exc:
        raise _limit(source, f"{what} holds {exc}: safepredict's limit", "value size") from None
    budget.spend(size, source)
    return size


def read_config_bytes(path: str | Path, source: str, limit: int = MAX_SOURCE_CHARS) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, size checked before reading.

    A device (``/dev/zero``), a FIFO or a socket is refused, not read (and a FIFO's open, made
    non-blocking, does not wait for a writer).
    """
    path = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(
                f"config {source} is not a regular file (a device, FIFO or socket); safepredict reads configs "
                "only from regular files",
                source=source,
                fix="pass the config file itself",
            )
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError(f"config {source} does not exist", source=source, fix="check the path") from None
    except OSError as exc:
        raise ConfigError(f"config {source} could not be read: {exc.strerror}", source=source) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config {source} is not a regular file", source=source)
        if info.st_size > limit:
            raise _limit(source, f"{info.st_size} bytes, more than safepredict reads from one file ({limit})", "size")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _limit(source, f"more than {limit} bytes, more than safepredict reads from one file", "size")
    return data


def _exc_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, never longer than a line: a KeyError's repr of its key is
    exponential for a shared hostile value, so arguments go through reprlib."""
    args = exc.args
    if len(args) == 1 and isinstance(args[0], str) and not isinstance(exc, KeyError):
        text = args[0] if len(args[0]) <= 300 else args[0][:300] + "..."
    else:
        text = reprlib.repr(args[0] if len(args) == 1 else args)
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- values


class _CfgDict(dict):
    """A dict that mmengine holds as a ``ConfigDict``: ``d.key`` reads and writes ``d['key']``.

    mmengine converts the dicts of base configs (and any dict stored into one) to
    ``ConfigDict``; a ``dict(...)`` the file builds itself stays a plain dict, without
    attribute access. The distinction is kept so a file reads here exactly as it does there.
    """


def _hook(value: Any) -> Any:
    """``ConfigDict._hook``: plain dicts become ``_CfgDict`` copies, lists and tuples are rebuilt."""
    if type(value) is dict:
        return _CfgDict({k: _hook(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return type(value)(_hook(v) for v in value)
    return value


def _cfgdict(value: Mapping[Any, Any]) -> _CfgDict:
    """``ConfigDict(value)``: a new ``_CfgDict`` whose values are hooked (nested ones kept)."""
    return _CfgDict({k: _hook(v) for k, v in value.items()})


def _update(owner: _CfgDict, other: Mapping[Any, Any]) -> None:
    """``ConfigDict.update``: a dict value merges into a dict value already there; the rest is set."""
    for key, value in other.items():
        if key not in owner or not isinstance(owner[key], dict) or not isinstance(value, dict):
            owner[key] = _hook(value)
        elif isinstance(owner[key], _CfgDict):
            _update(owner[key], value)
        else:
            owner[key].update(value)


def _setitem(container: Any, key: Any, value: Any) -> None:
    container[key] = _hook(value) if isinstance(container, _CfgDict) else value


def _plain(value: Any) -> Any:
    """``ConfigDict.to_dict``: every dict a plain ``dict``, lists and tuples rebuilt."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def _to_config_dict(cfg: Any, scope: str | None, has_scope: bool = True) -> Any:
    """``Config._dict_to_config_dict``: ``_CfgDict`` throughout, ``_scope_`` on the outer typed dicts."""
    if isinstance(cfg, dict):
        if has_scope and "type" in cfg:
            has_scope = False
            if scope is not None and cfg.get("_scope_", None) is None:
                cfg["_scope_"] = scope
        out = _cfgdict(cfg)
        for key, value in list(out.items()):
            out[key] = _to_config_dict(value, scope, has_scope)
        return out
    if isinstance(cfg, tuple):
        return tuple(_to_config_dict(c, scope, has_scope) for c in cfg)
    if isinstance(cfg, list):
        return [_to_config_dict(c, scope, has_scope) for c in cfg]
    return cfg


def _merge_a_into_b(a: Mapping[Any, Any], b: Any) -> Any:
    """``Config._merge_a_into_b`` (``allow_list_keys=False``): ``a`` over a copy of ``b``."""
    b = _cfgdict(b) if isinstance(b, _CfgDict) else dict(b)
    for k, v in a.items():
        if isinstance(v, dict):
            if k in b and not v.pop(DELETE_KEY, False):
                if not isinstance(b[k], dict):
                    raise ConfigError(
                        f"{k}={reprlib.repr(v)} in child config cannot inherit from base because {k} is a dict in the "
                        f"child config but is of type {type(b[k])} in base config. You may set "
                        f"`{DELETE_KEY}=True` to ignore the base config.",
                        found=type(b[k]).__name__,
                        expected="dict",
                    )
                _setitem(b, k, _merge_a_into_b(v, b[k]))
            else:
                _setitem(b, k, _cfgdict(v))
        else:
            _setitem(b, k, v)
    return b


# --------------------------------------------------------------------------- the evaluator


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.BitAnd: operator.and_,
}
_INPLACE: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.iadd,
    ast.Sub: operator.isub,
    ast.Mult: operator.imul,
    ast.Div: operator.itruediv,
    ast.FloorDiv: operator.ifloordiv,
    ast.Mod: operator.imod,
    ast.Pow: operator.ipow,
    ast.LShift: operator.ilshift,
    ast.RShift: operator.irshift,
    ast.BitOr: operator.ior,
    ast.BitXor: operator.ixor,
    ast.BitAnd: operator.iand,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Invert: operator.invert,
    ast.Not: operator.not_,
}
_NUMBERS = (int, float, complex)
# What string formatting may format: the text of a container is unbounded ([x] * n, nested).
_SCALARS = (str, bytes, int, float, complex, bool, type(None))
_SEQUENCES = (str, bytes, list, tuple)
_SUBSCRIPTABLE = (*_SEQUENCES, dict)
_ITERABLE = (*_SEQUENCES, dict, set)
_FORMAT_NUMBER = re.compile(r"\d+")
# What the statements and expressions outside the language are, in words.
_NAMES: dict[type[ast.AST], str] = {
    ast.Import: "an import",
    ast.ImportFrom: "an import",
    ast.FunctionDef: "a function definition",
    ast.AsyncFunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
    ast.Lambda: "a lambda",
    ast.GeneratorExp: "a generator expression outside a call of dict(), list(), tuple() or set()",
    ast.If: "an if statement",
    ast.IfExp: "a conditional expression",
    ast.For: "a for loop",
    ast.AsyncFor: "a for loop",
    ast.While: "a while loop",
    ast.With: "a with statement",
    ast.AsyncWith: "a with statement",
    ast.Try: "a try statement",
    ast.Raise: "a raise statement",
    ast.Assert: "an assert statement",
    ast.Global: "a global statement",
    ast.Nonlocal: "a nonlocal statement",
    ast.AnnAssign: "an annotated assignment (the annotation is evaluated)",
    ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operation",
    ast.NamedExpr: "an assignment expression (:=)",
    ast.Await: "an await",
    ast.Yield: "a yield",
    ast.YieldFrom: "a yield",
}


class _Evaluator:
    """Runs the statements of one config file over a namespace, as plain data."""

    def __init__(
        self, source: str, namespace: dict[str, Any], sha256: str | None, budget: Budget | None = None
    ) -> None:
        self.source = source
        self.ns = namespace
        self.sha256 = sha256
        self.budget = budget if budget is not None else Budget(source)
        self.line: int | None = None

    # errors ---------------------------------------------------------------

    def refuse(self, node: ast.AST, what: str) -> NoReturn:
        raise untrusted(what, self.source, line=getattr(node, "lineno", None) or self.line, sha256=self.sha256)

    def fail(self, message: str, node: ast.AST | None = None) -> NoReturn:
        line = getattr(node, "lineno", None) or self.line
        where = f"{self.source}, line {line}" if line else self.source
        raise ConfigError(
            f"config {where} could not be read: {message}",
            source=self.source,
            details={"line": line},
            fix="correct the config (it must load with mmengine's Config.fromfile, too)",
        )

    def charge(self, value: Any) -> Any:
        """Spend the cost of creating ``value`` (its length, for a container or string)."""
        if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
            size = len(value)
            if size > MAX_ITEMS:
                self.fail(f"a value of {size} elements exceeds safepredict's limit of {MAX_ITEMS}")
            self.spend(size + 1)
        else:
            self.spend(1)
        return value

    def spend(self, units: int) -> None:
        if self.budget.work + units > MAX_WORK:
            self.fail(
                f"reading the config takes more than {MAX_WORK} units of work (values created, copied, hashed "
                "or iterated; safepredict's limit)"
            )
        self.budget.work += units

    def expanded(self, value: Any, node: ast.AST | None = None) -> Any:
        """Spend what copying or hashing ``value`` costs: its size as a tree (sharing expanded)."""
        if isinstance(value, list | tuple | dict | set | frozenset):
            try:
                self.spend(tree_size(value))
            except _TooBig as exc:
                self.fail(f"the value holds {exc}, past safepredict's limit", node)
        else:
            self.spend(1)
        return value

    def hashed(self, values: Any, node: ast.AST | None = None) -> None:
        """Spend what hashing each of ``values`` costs (a tuple hashes all it holds, shared parts again)."""
        total = 0
        for value in values:
            total += 1
            if isinstance(value, tuple | frozenset):
                self.expanded(value, node)
        self.spend(total)

    # statements -----------------------------------------------------------

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.line = getattr(stmt, "lineno", None)
            try:
                self.statement(stmt)
            except SafePredictError:
                raise
            except RecursionError:
                self.fail("the expression is nested too deeply", stmt)
            except MemoryError:
                self.fail("the expression needs more memory than safepredict allows", stmt)
            except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
                self.fail(_exc_text(exc), stmt)

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            value = self.eval(stmt.value)
            for target in stmt.targets:
                self.store(target, value)
        elif isinstance(stmt, ast.AugAssign):
            self.augassign(stmt)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.delete(target)
        elif isinstance(stmt, ast.Expr):
            self.eval(stmt.value)
        elif isinstance(stmt, ast.Pass):
            pass
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            names = ", ".join(a.name for a in stmt.names)
            module = f"from {'.' * stmt.level}{stmt.module or ''} " if isinstance(stmt, ast.ImportFrom) else ""
            self.refuse(stmt, f"an import ({module}import {names})")
        elif isinstance(stmt, ast.With):
            self.refuse(stmt, "a with statement (a pure-Python `with read_base():` config is Python)")
        else:
            self.refuse(stmt, _NAMES.get(type(stmt), f"a {type(stmt).__name__} statement"))

    def store(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.ns[target.id] = value
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value)
            key = self.index(target.slice)
            if isinstance(container, dict):
                if isinstance(container, _CfgDict):  # ConfigDict copies what it stores
                    self.expanded(value, target)
                _setitem(container, key, value)
            elif isinstance(container, list):
                container[key] = value
                self.charge(container)
            else:
                self.fail(f"'{type(container).__name__}' object does not support item assignment", target)
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value)
            self.check_attribute(owner, target)
            self.expanded(value, target)
            _setitem(owner, target.attr, value)
        elif isinstance(target, ast.Tuple | ast.List):
            if any(isinstance(e, ast.Starred) for e in target.elts):
                self.refuse(target, "a starred assignment")
            for element, item in self.unpack(target, value):
                self.store(element, item)
        else:
            self.refuse(target, f"an assignment to {type(target).__name__}")

    def unpack(self, target: ast.Tuple | ast.List, value: Any) -> list[tuple[ast.expr, Any]]:
        """``a, b = value``: each target element with its item, as Python pairs them."""
        if not isinstance(value, list | tuple | str | dict | set):
            self.fail(f"cannot unpack a {type(value).__name__}", target)
        self.charge(value)
        items = list(value)
        if len(items) != len(target.elts):
            self.fail(f"cannot unpack {len(items)} values into {len(target.elts)} names", target)
        return list(zip(target.elts, items, strict=True))

    def augassign(self, stmt: ast.AugAssign) -> None:
        target = stmt.target
        op = _INPLACE.get(type(stmt.op))
        if op is None:
            self.refuse(stmt, f"the operator {type(stmt.op).__name__}")
        if isinstance(target, ast.Name):
            current = self.name(target)
            self.ns[target.id] = self.binop(stmt.op, current, self.eval(stmt.value), op)
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value)
            key = self.index(target.slice)
            result = self.binop(stmt.op, container[key], self.eval(stmt.value), op)
            if isinstance(container, dict):
                if isinstance(container, _CfgDict):
                    self.expanded(result, target)
                _setitem(container, key, result)
            elif isinstance(container, list):
                container[key] = result
            else:
                self.fail(f"'{type(container).__name__}' object does not support item assignment", target)
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value)
            self.check_attribute(owner, target)
            result = self.binop(stmt.op, self.attribute_value(owner, target), self.eval(stmt.value), op)
            self.expanded(result, target)
            _setitem(owner, target.attr, result)
        else:
            self.refuse(stmt, f"an augmented assignment to {type(target).__name__}")

    def delete(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if target.id not in self.ns:
                self.fail(f"name '{target.id}' is not defined", target)
            del self.ns[target.id]
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value)
            if not isinstance(container, dict | list):
                self.fail(f"'{type(container).__name__}' object does not support item deletion", target)
            if isinstance(container, list):
                self.charge(container)  # a deletion from a list moves what follows it
            del container[self.index(target.slice)]
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value)
            self.check_attribute(owner, target)
            if target.attr not in owner:
                self.fail(f"'ConfigDict' object has no attribute '{target.attr}'", target)
            del owner[target.attr]
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.delete(element)
        else:
            self.refuse(target, f"a deletion of {type(target).__name__}")

    # expressions ----------------------------------------------------------

    def eval(self, node: ast.expr) -> Any:
        self.spend(1)  # every node evaluated, whatever it makes
        if isinstance(node, ast.Constant):
            return self.charge(node.value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.List):
            return self.charge(self.elements(node.elts))
        if isinstance(node, ast.Tuple):
            return self.charge(tuple(self.elements(node.elts)))
        if isinstance(node, ast.Set):
            elements = self.elements(node.elts)
            self.hashed(elements, node)
            return self.charge(set(elements))
        if isinstance(node, ast.Dict):
            return self.display(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp):
            return self.comprehension(node)
        if isinstance(node, ast.UnaryOp):
            unary = _UNARY.get(type(node.op))
            if unary is None:  # pragma: no cover - every unary operator is listed
                self.refuse(node, f"the operator {type(node.op).__name__}")
            operand = self.eval(node.operand)
            if not isinstance(node.op, ast.Not) and not isinstance(operand, _NUMBERS):
                self.fail(f"bad operand type for unary {type(node.op).__name__}: '{type(operand).__name__}'", node)
            return self.charge(unary(operand))
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.refuse(node, f"the operator {type(node.op).__name__}")
            return self.binop(node.op, self.eval(node.left), self.eval(node.right), op)
        if isinstance(node, ast.Subscript):
            container = self.eval(node.value)
            if not isinstance(container, _SUBSCRIPTABLE):
                self.fail(f"'{type(container).__name__}' object is not subscriptable", node)
            return self.charge(container[self.index(node.slice)])
        if isinstance(node, ast.Attribute):
            owner = self.eval(node.value)
            self.check_attribute(owner, node)
            return self.attribute_value(owner, node)
        if isinstance(node, ast.JoinedStr):
            return self.charge("".join(self.fstring_part(v) for v in node.values))
        if isinstance(node, ast.Starred):
            self.refuse(node, "a starred expression outside a display")
        self.refuse(node, _NAMES.get(type(node), f"a {type(node).__name__} expression"))

    def name(self, node: ast.Name) -> Any:
        if node.id in self.ns:
            return self.ns[node.id]
        if hasattr(builtins, node.id) or node.id.startswith("__"):
            self.refuse(node, f"a reference to the Python built-in {node.id!r}")
        self.fail(f"name '{node.id}' is not defined", node)

    def elements(self, nodes: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for element in nodes:
            if isinstance(element, ast.Starred):
                value = self.eval(element.value)
                if not isinstance(value, _ITERABLE):
                    self.fail(f"cannot unpack a {type(value).__name__}", element)
                self.charge(value)
                out.extend(value)
            else:
                out.append(self.eval(element))
            if len(out) > MAX_ITEMS:
                self.charge(out)
        return out

    def display(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # {**mapping}
                mapping = self.eval(value)
                if not isinstance(mapping, dict):
                    self.fail(f"'{type(mapping).__name__}' object is not a mapping", value)
                self.charge(mapping)
                out.update(mapping)
            else:
                k = self.eval(key)
                self.hashed([k], key)
                out[k] = self.eval(value)
        return self.charge(out)

    def comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> Any:
        """A list, set or dict comprehension (or a generator expression, as a list), as Python 3 runs it.

        The loop names live in a scope of their own, which sees the config's names and is gone
        afterwards (they do not leak into the config); the first iterable is evaluated outside
        it. Every element produced is counted against the limits, so nested loops cannot build
        more than a config may.
        """
        out: Any = {} if isinstance(node, ast.DictComp) else set() if isinstance(node, ast.SetComp) else []
        outer = self.ns
        self.ns = dict(outer)  # the comprehension's scope
        try:
            self.generate(node, 0, out)
        finally:
            self.ns = outer
        return self.charge(out)

    def generate(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp, i: int, out: Any) -> None:
        loop = node.generators[i]
        if loop.is_async:
            self.refuse(loop.iter, "an async comprehension")
        iterable = self.eval(loop.iter)
        if not isinstance(iterable, _ITERABLE):
            self.fail(f"'{type(iterable).__name__}' object is not iterable", loop.iter)
        for item in list(iterable):
            self.spend(1)  # one iteration's work, whether its filter keeps it or not
            self.bind(loop.target, item)
            if not all(self.eval(condition) for condition in loop.ifs):
                continue
            if i + 1 < len(node.generators):
                self.generate(node, i + 1, out)
            elif isinstance(node, ast.DictComp):
                key = self.index(node.key)
                out[key] = self.eval(node.value)
            elif isinstance(node, ast.SetComp):
                out.add(self.index(node.elt))
            else:
                out.append(self.eval(node.elt))
            if len(out) > MAX_ITEMS:
                self.charge(out)

    def bind(self, target: ast.expr, value: Any) -> None:
        """A comprehension's loop target: a name, or a tuple/list of them (``for i, (a, b) in ...``)."""
        if isinstance(target, ast.Name):
            self.ns[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List) and not any(isinstance(e, ast.Starred) for e in target.elts):
            for element, item in self.unpack(target, value):
                self.bind(element, item)
        else:
            self.refuse(target, f"a comprehension that assigns to {type(target).__name__}")

    def function(self, node: ast.Call, name: str) -> Any:
        """One of :data:`_FUNCTIONS`, on plain data; its result a list (or an int for ``len``)."""
        if node.keywords:
            self.fail(f"{name}() takes no keyword arguments here", node)
        args: list[Any] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.refuse(arg, f"a starred argument to {name}()")
            args.append(self.eval(arg))
        if name == "range":
            if not 1 <= len(args) <= 3 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                self.fail("range() takes one to three integers", node)
            numbers = range(*args)
            if len(numbers) > MAX_ITEMS:
                self.fail(f"a range of {len(numbers)} elements exceeds safepredict's limit of {MAX_ITEMS}", node)
            return self.charge(list(numbers))
        for value in args:
            if not isinstance(value, _ITERABLE):
                self.fail(f"'{type(value).__name__}' object is not iterable", node)
        if name == "len":
            if len(args) != 1:
                self.fail(f"len() takes exactly one argument ({len(args)} given)", node)
            return self.charge(len(args[0]))
        if name == "enumerate":
            if len(args) != 1:
                self.fail("enumerate() takes one iterable here (no start)", node)
            self.charge(args[0])
            return self.charge(list(enumerate(args[0])))
        for value in args:
            self.charge(value)
        return self.charge([tuple(t) for t in zip(*args, strict=False)])

    def method(self, node: ast.Call, func: ast.Attribute) -> Any:
        """``d.pop(key[, default])``, ``d.get(key[, default])`` or ``d.update(mapping, **kw)`` on a dict.

        As the file's own objects do it: a dict the file built is a plain ``dict``; one from
        ``_base_`` is mmengine's ``ConfigDict``, whose ``pop`` defaults to None and whose
        ``update`` merges nested dicts into nested dicts instead of replacing them.
        """
        owner = self.eval(func.value)
        if not isinstance(owner, dict):
            self.refuse(node, f"a call of {_describe(func)} on a {type(owner).__name__}")
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.refuse(node, f"a starred argument to .{func.attr}()")
        args = [self.eval(a) for a in node.args]
        keywords: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None or func.attr != "update":
                self.fail(f".{func.attr}() takes no keyword arguments here", node)
            keywords[keyword.arg] = self.eval(keyword.value)
        if func.attr == "update":
            if len(args) > 1 or (args and not isinstance(args[0], dict)):
                self.fail(".update() takes one mapping", node)
            other = {**(args[0] if args else {}), **keywords}
            self.charge(other)
            if not isinstance(owner, _CfgDict):
                owner.update(other)
                return self.charge(None)
            self.expanded(other, node)  # ConfigDict.update copies and merges all of it
            _update(owner, other)
            return self.charge(None)
        if not 1 <= len(args) <= 2:
            self.fail(f".{func.attr}() takes a key and an optional default", node)
        key = args[0]
        if isinstance(key, list | dict | set):
            self.fail(f"unhashable type: '{type(key).__name__}'", node)
        self.hashed([key], node)
        if func.attr == "get":
            return owner.get(key, args[1] if len(args) == 2 else None)
        if isinstance(owner, _CfgDict):  # ConfigDict.pop(key, default=None)
            return owner.pop(key, args[1] if len(args) == 2 else None)
        return owner.pop(*args)  # dict.pop: KeyError (a ConfigError here) without a default

    def call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _FUNCTIONS and func.id not in self.ns:
            return self.function(node, func.id)
        if isinstance(func, ast.Attribute) and func.attr in _METHODS:
            return self.method(node, func)
        if not isinstance(func, ast.Name) or func.id not in _CONSTRUCTORS or func.id in self.ns:
            self.refuse(node, f"a call of {_describe(func)}")
        positional: list[Any] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.refuse(arg, f"a starred argument to {func.id}()")
            if isinstance(arg, ast.GeneratorExp):  # tuple(x for x in ...): the generator, consumed
                positional.append(self.comprehension(arg))
                continue
            positional.append(self.eval(arg))
        if len(positional) > 1:
            self.fail(f"{func.id} expected at most 1 argument, got {len(positional)}", node)
        if positional and not isinstance(positional[0], _ITERABLE):
            self.fail(f"'{type(positional[0]).__name__}' object is not iterable", node)
        keywords: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # **mapping
                mapping = self.eval(keyword.value)
                if not isinstance(mapping, dict):
                    self.fail(f"argument after ** must be a mapping, not {type(mapping).__name__}", keyword.value)
                items = list(mapping.items())
            else:
                items = [(keyword.arg, self.eval(keyword.value))]
            for key, value in items:
                if not isinstance(key, str):
                    self.fail("keywords must be strings", node)
                if key in keywords:
                    self.fail(f"{func.id}() got multiple values for keyword argument '{key}'", node)
                keywords[key] = value
        if keywords and func.id != "dict":
            self.fail(f"{func.id}() takes no keyword arguments", node)
        if positional:
            self.charge(positional[0])  # the constructor walks all of it, whatever it keeps
        if positional and func.id == "dict" and not isinstance(positional[0], dict):
            # dict(iterable of pairs): every element must be a pair.
            for item in positional[0]:
                if not isinstance(item, list | tuple | str) or len(item) != 2:
                    self.fail("dictionary update sequence element has the wrong length", node)
            self.hashed((item[0] for item in positional[0]), node)
        if positional and func.id == "set" and not isinstance(positional[0], set | dict):
            self.hashed(positional[0], node)
        return self.charge(_CONSTRUCTORS[func.id](*positional, **keywords))

    def index(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            parts = [self.eval(p) if p is not None else None for p in (node.lower, node.upper, node.step)]
            for part in parts:
                if part is not None and not isinstance(part, int):
                    self.fail("slice indices must be integers or None", node)
            return slice(*parts)
        key = self.eval(node)
        if isinstance(key, list | dict | set):
            self.fail(f"unhashable type: '{type(key).__name__}'", node)
        self.hashed([key], node)  # a key is hashed where it is used, a shared tuple at full size
        return key

    def check_attribute(self, owner: Any, node: ast.Attribute) -> None:
        if not isinstance(owner, _CfgDict):
            self.refuse(
                node,
                f"attribute access .{node.attr} on a {type(owner).__name__} "
                "(only _base_ and the dicts it holds read keys as attributes)",
            )
        if node.attr in _CONFIGDICT_ATTRS or node.attr.startswith("__"):
            self.refuse(node, f"attribute access .{node.attr} (a Python attribute, not a config key)")

    def attribute_value(self, owner: _CfgDict, node: ast.Attribute) -> Any:
        if node.attr not in owner:
            self.fail(f"'ConfigDict' object has no attribute '{node.attr}'", node)
        return owner[node.attr]

    def fstring_part(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return str(node.value)
        if not isinstance(node, ast.FormattedValue):  # pragma: no cover - the parser makes only these
            self.refuse(node, "an f-string part")
        value = self.eval(node.value)
        if not isinstance(value, _SCALARS):
            self.fail(f"an f-string formats only strings and numbers, not a {type(value).__name__}", node)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = ""
        if node.format_spec is not None:
            spec = self.eval(node.format_spec)
            self.check_width(spec, node)
        text = format(value, spec)
        return str(self.charge(text))

    def check_width(self, spec: str, node: ast.AST) -> None:
        for number in _FORMAT_NUMBER.findall(spec):
            if len(number) > 5 or int(number) > MAX_FORMAT_WIDTH:
                self.fail(f"format width {number} exceeds safepredict's limit of {MAX_FORMAT_WIDTH}", node)

    def binop(self, op_node: ast.operator, left: Any, right: Any, op: Callable[[Any, Any], Any]) -> Any:
        kind = type(op_node)
        self.guard(kind, left, right, op_node)
        if isinstance(left, int) and isinstance(right, int):
            # Arithmetic on wide integers costs by their width (multiplication and division by its
            # square): 65,536-bit operands are ~5 ms a division, not one unit.
            words = max(left.bit_length(), right.bit_length()) // 30 + 1
            quadratic = kind in (ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.Div)
            self.spend(words * words // 64 if quadratic else words // 8)
        return self.charge(op(left, right))

    def guard(self, kind: type[ast.operator], left: Any, right: Any, node: ast.AST) -> None:
        """Refuse, before computing it, a result that would be too big to compute."""
        seq = _SEQUENCES
        if kind is ast.Mult:
            if isinstance(left, seq) and isinstance(right, int):
                size = len(left) * max(right, 0)
            elif isinstance(right, seq) and isinstance(left, int):
                size = len(right) * max(left, 0)
            else:
                size = 0
            if size > MAX_ITEMS:
                self.fail(f"a value of {size} elements exceeds safepredict's limit of {MAX_ITEMS}", node)
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    self.fail(f"an integer wider than {MAX_INT_BITS} bits", node)
        elif kind is ast.Pow:
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * left.bit_length() > MAX_INT_BITS:
                    self.fail(f"an integer wider than {MAX_INT_BITS} bits", node)
        elif kind is ast.LShift:
            if isinstance(left, int) and isinstance(right, int) and left and right + left.bit_length() > MAX_INT_BITS:
                self.fail(f"an integer wider than {MAX_INT_BITS} bits", node)
        elif kind is ast.Mod:
            if isinstance(left, str | bytes):
                if isinstance(right, dict):
                    args = tuple(right.values())
                else:
                    args = right if isinstance(right, tuple) else (right,)
                if not all(isinstance(a, _SCALARS) for a in args):
                    self.fail("a %-format formats only strings and numbers", node)
                text = left.decode("latin-1") if isinstance(left, bytes) else left
                for spec in _percent_specs(text):
                    if "*" in spec:
                        self.fail("a '*' width in a %-format", node)
                    self.check_width(spec, node)
        elif kind is ast.Add:
            size = len(left) + len(right) if isinstance(left, seq) and isinstance(right, seq) else 0
            if size > MAX_ITEMS:
                self.fail(f"a value of {size} elements exceeds safepredict's limit of {MAX_ITEMS}", node)


def _percent_specs(text: str) -> Iterator[str]:
    """The width and precision of each conversion of a ``%``-format, parsed as CPython parses them.

    A mapping key is skipped to its balanced ``)`` (``%((a)b)99999999s`` has the key ``(a)b``),
    then the flags; what follows up to the conversion letter (width, ``.precision``, ``*``) is
    yielded. Linear in the text.
    """
    i, n = 0, len(text)
    while True:
        i = text.find("%", i)
        if i < 0 or i + 1 >= n:
            return
        i += 1
        if text[i] == "%":
            i += 1
            continue
        if text[i] == "(":
            depth = 1
            i += 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
        while i < n and text[i] in "-+ #0":
            i += 1
        start = i
        while i < n and (text[i].isdigit() or text[i] in ".*"):
            i += 1
        yield text[start:i]


def _describe(func: ast.expr) -> str:
    try:
        return f"{ast.unparse(func)}()"
    except Exception:  # noqa: BLE001 - only a name for the message
        return type(func).__name__


# --------------------------------------------------------------------------- mmengine's _file2dict


def _parse(text: str, source: str) -> ast.Module:
    if len(text) > MAX_SOURCE_CHARS:
        raise ConfigError(
            f"config {source} has {len(text)} characters, more than safepredict reads ({MAX_SOURCE_CHARS})",
            source=source,
        )
    try:
        with warnings.catch_warnings():
            # Invalid escapes in a config's strings are the author's business, not a warning here.
            warnings.simplefilter("ignore")
            return ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise ConfigError(
            f"There are syntax errors in config file {source}, line {exc.lineno}: {exc.msg}",
            source=source,
            details={"line": exc.lineno},
        ) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ConfigError(f"config {source} could not be parsed: {type(exc).__name__}: {exc}", source=source) from None


def _is_read_base(tree: ast.Module) -> ast.stmt | None:
    """The first statement of a pure-Python (``read_base``/import) config, or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY:
            return None
        if isinstance(node, ast.With | ast.Import | ast.ImportFrom):
            return node
    return None


def _base_assignment(tree: ast.Module) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY:
            return node
    return None


def _is_base_assign(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY


def _templates(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for a pattern that begins with ``{{``, each match within
    ``_TEMPLATE_WINDOW`` characters of its start: linear in the text, where mmengine's regexes run
    in quadratic time on an unclosed ``{{$A:`` repeated (the caller caps the ``{{`` sites)."""
    pos, n = 0, len(text)
    while True:
        start = text.find("{{", pos)
        if start < 0:
            return
        found = pattern.match(text, start, min(n, start + _TEMPLATE_WINDOW))
        if found is not None:
            yield found
            pos = max(found.end(), start + 1)
        else:
            pos = start + 1


def _substitute(pattern: re.Pattern[str], text: str, replace: Callable[[re.Match[str]], str]) -> str:
    """``pattern.sub(replace, text)`` in one pass over :func:`_templates`."""
    parts: list[str] = []
    pos = 0
    for found in _templates(pattern, text):
        parts.append(text[pos : found.start()])
        parts.append(replace(found))
        pos = found.end()
    if not parts:
        return text
    parts.append(text[pos:])
    out = "".join(parts)
    if len(out) > MAX_TOTAL_CHARS:
        raise ConfigError(f"config text grows past {MAX_TOTAL_CHARS} characters by its substitutions")
    return out


def _check_templates(text: str, source: str) -> None:
    sites = text.count("{{")
    if sites > MAX_TEMPLATES:
        raise _limit(source, f"{sites} `{{{{` substitution sites, more than safepredict reads ({MAX_TEMPLATES})",
                     "substitutions")


_PREDEFINED = re.compile(r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}")
_ENVIRONMENT = re.compile(r"\{\{[\'\"]?\s*\$(\w+)\s*\:\s*(\S*?)\s*[\'\"]?\}\}")
_BASE_VAR = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w\.]+)\s*\}\}")


def _predefined(text: str, filename: str) -> str:
    """``Config._substitute_predefined_vars`` (in one pass instead of one per name)."""
    file_basename = osp.basename(filename)
    templates = {
        "fileDirname": osp.dirname(filename),
        "fileBasename": file_basename,
        "fileBasenameNoExtension": osp.splitext(file_basename)[0],
        "fileExtname": osp.splitext(filename)[1],
    }
    return _substitute(_PREDEFINED, text, lambda m: templates[m.group(1)].replace("\\", "/"))


def _environment(text: str, source: str) -> str:
    """``Config._substitute_env_variables``: ``{{$NAME:default}}`` (in one pass)."""
    logged: set[str] = set()

    def replace(found: re.Match[str]) -> str:
        var_name, value = found.group(1), found.group(2)
        if var_name in os.environ:
            value = os.environ[var_name]
            if var_name not in logged:
                logged.add(var_name)
                logger.info("config %s: using environment variable %s=%r", source, var_name, value)
        if not value:
            raise ConfigError(
                f"config {source}: `{var_name}` cannot be found in `os.environ`. Please set `{var_name}` in "
                "environment or give a default value.",
                source=source,
            )
        return value

    return _substitute(_ENVIRONMENT, text, replace)


def _pre_substitute_base_vars(text: str) -> tuple[str, dict[str, str]]:
    """``Config._pre_substitute_base_vars``: ``{{_base_.a.b}}`` becomes a unique placeholder string."""
    tokens: dict[str, str] = {}

    def replace(found: re.Match[str]) -> str:
        base_var = found.group(1)
        if base_var not in tokens:
            tokens[base_var] = f"_{base_var}_{uuid.uuid4().hex.lower()[:6]}"
        return f'"{tokens[base_var]}"'

    text = _substitute(_BASE_VAR, text, replace)
    return text, {token: var for var, token in tokens.items()}


def _base_value(base_cfg: Any, dotted: str, source: str) -> Any:
    value = base_cfg
    for key in dotted.split("."):
        try:
            value = value[key]
        except (KeyError, TypeError, IndexError) as exc:
            raise ConfigError(
                f"config {source}: {{{{_base_.{dotted}}}}} names no value of the base configs ({exc!r})",
                source=source,
            ) from None
    return value


def _substitute_base_vars(cfg: Any, placeholders: dict[str, str], base_cfg: Any, source: str) -> Any:
    """``Config._substitute_base_vars``: placeholder strings become the base values they name."""
    cfg = copy.deepcopy(cfg)
    if isinstance(cfg, dict):
        for k, v in list(cfg.items()):
            if isinstance(v, str) and v in placeholders:
                _setitem(cfg, k, _base_value(base_cfg, placeholders[v], source))
            elif isinstance(v, list | tuple | dict):
                _setitem(cfg, k, _substitute_base_vars(v, placeholders, base_cfg, source))
    elif isinstance(cfg, tuple):
        cfg = tuple(_substitute_base_vars(c, placeholders, base_cfg, source) for c in cfg)
    elif isinstance(cfg, list):
        cfg = [_substitute_base_vars(c, placeholders, base_cfg, source) for c in cfg]
    elif isinstance(cfg, str) and cfg in placeholders:
        cfg = _base_value(base_cfg, placeholders[cfg], source)
    return cfg


def _base_files(
    tree: ast.Module | None,
    data: Mapping[str, Any] | None,
    source: str,
    sha256: str | None,
    budget: Budget | None = None,
) -> list[str]:
    """``Config._get_base_files``: the ``_base_`` of a file, as a list of paths."""
    if tree is not None:
        node = _base_assignment(tree)
        if node is None:
            return []
        # mmengine eval()s this expression; here it is evaluated as data, with no names.
        evaluator = _Evaluator(source, {}, sha256, budget)
        evaluator.line = node.lineno
        try:
            value = evaluator.eval(node.value)
        except SafePredictError:
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError, MemoryError) as exc:
            evaluator.fail(_exc_text(exc), node)
    else:
        value = (data or {}).get(BASE_KEY, [])
    files = value if isinstance(value, list) else [value]
    if len(files) > MAX_BASE_FILES:
        raise _limit(source, f"_base_ lists {len(files)} files, more than safepredict reads ({MAX_BASE_FILES})",
                     "base files")
    for item in files:
        if not isinstance(item, str):
            raise ConfigError(
                f"config {source}: _base_ must be a path or a list of paths, found {reprlib.repr(item)}",
                found=item,
                source=source,
            )
    return files


def _external_path(spec: str, source: str) -> tuple[str, str]:
    """``package::rel/path.py`` as the file ``<package>/.mim/configs/rel/path.py`` and its scope.

    The package is located with ``importlib.util.find_spec`` of its top-level name, which
    searches the path without importing (running) it.
    """
    import importlib.util

    if re.match(r"\w*::\w*/\w*", spec) is None or spec.count("::") > 1:
        raise ConfigError(
            f"config {source}: external base config {reprlib.repr(spec)} is not `package::path`", source=source
        )
    scope, rel = spec.split("::")
    try:
        # A name already imported answers from sys.modules; `__main__` (no spec there) raises ValueError.
        found = importlib.util.find_spec(scope) if scope.isidentifier() and not scope.startswith("_") else None
    except (ImportError, ValueError, AttributeError):
        found = None
    if found is None or not found.origin:
        raise FrameworkNotInstalled(
            f"config {source} inherits {spec!r}, but {scope} is not installed",
            expected=scope,
            source=source,
            fix=f"install {scope}, or pass the config with its _base_ resolved (mmengine dumps it so)",
        )
    path = osp.join(osp.dirname(found.origin), ".mim", "configs", rel)
    if not osp.isfile(path):
        raise ConfigError(f"config {source}: external base config {spec!r} not found at {path}", source=source)
    return path, scope


def _read_structured(path: str, text: str, source: str) -> Any:
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"config {source} is not valid JSON: {_exc_text(exc)}", source=source) from None
    from safepredict.frameworks.safe_yaml import safe_load

    return safe_load(text, source)


_Origins = dict[str, tuple[str, "int | None", "str | None"]]


def _file2dict(
    filename: str,
    *,
    text: str | None = None,
    label: str | None = None,
    chain: tuple[str, ...] = (),
    budget: Budget | None = None,
) -> tuple[dict[str, Any], str, _Origins]:
    """``Config._file2dict`` without executing anything: ``(cfg_dict, cfg_text, origins)``.

    ``text`` given: the config text of a checkpoint, which has no file; a ``_base_`` there
    cannot be resolved, and the file-dependent ``{{ fileDirname }}`` / ``{{$ENV:x}}``
    substitutions are not made (mmengine dumps a config with them already applied).
    ``origins`` maps each top-level key to the ``(file, line, sha256)`` that last set it.
    """
    embedded = text is not None
    budget = budget if budget is not None else Budget(label or filename)
    if embedded:
        source = label or filename
        sha256 = None
        raw = text or ""
        if len(raw) > MAX_SOURCE_CHARS:
            raise _limit(source, f"{len(raw)} characters, more than safepredict reads ({MAX_SOURCE_CHARS})", "size")
        budget.file(source, len(raw))
    else:
        filename = osp.abspath(osp.expanduser(filename))
        source = label or filename
        if len(chain) > MAX_BASE_DEPTH:
            raise ConfigError(f"config {source}: _base_ chain deeper than {MAX_BASE_DEPTH}", source=source)
        if filename in chain:
            raise ConfigError(f"config {source} inherits itself through _base_ ({' -> '.join(chain)})", source=source)
        suffix = osp.splitext(filename)[1]
        if suffix not in _SUFFIXES:
            raise ConfigError(
                f"config {source}: only py/yml/yaml/json type are supported now!", source=source, found=suffix
            )
        if not osp.exists(filename):
            raise ConfigError(f"config {source} does not exist", source=source, fix="check the _base_ path")
        data = read_config_bytes(filename, source)
        budget.file(source, len(data))
        sha256 = hashlib.sha256(data).hexdigest()
        raw = data.decode("utf-8", errors="replace")

    is_py = embedded or filename.endswith(".py")
    _check_templates(raw, source)
    content = raw if embedded else _environment(_predefined(raw, filename), source)
    content, placeholders = _pre_substitute_base_vars(content)

    tree: ast.Module | None = None
    data_dict: Any = None
    if is_py:
        tree = _parse(content, source)
        lazy = _is_read_base(tree)
        if lazy is not None:
            kind = "a `with read_base():` block" if isinstance(lazy, ast.With) else "an import"
            raise untrusted(
                f"{kind}: this is a pure-Python (lazy-import) mmengine config, which is Python",
                source,
                line=getattr(lazy, "lineno", None),
                sha256=sha256,
            )
    else:
        data_dict = _read_structured(filename, content, source)
        if not isinstance(data_dict, dict):
            raise ConfigError(f"config {source} holds a {type(data_dict).__name__}, not a mapping", source=source)
        measure(data_dict, budget, source)

    base_cfg: _CfgDict = _CfgDict()
    texts: list[str] = []
    origins: _Origins = {}
    base_specs = _base_files(tree, data_dict, source, sha256, budget)
    if base_specs and embedded:
        raise ConfigError(
            f"{source} inherits {reprlib.repr(base_specs)} through _base_, which cannot be resolved without "
            "the files; a config mmengine dumps into a checkpoint has its _base_ already merged in",
            found=base_specs,
            source=source,
            fix="pass the training config file (work_dir/<name>.py as mmengine dumped it) as training_config",
        )
    for spec in base_specs:
        if "::" in spec:
            base_path, scope = _external_path(spec, source)
        else:
            base_path, scope = osp.join(osp.dirname(filename), spec), None
        sub, sub_text, sub_origins = _file2dict(base_path, chain=(*chain, filename), budget=budget)
        texts.append(sub_text)
        duplicate = base_cfg.keys() & sub.keys()
        if duplicate:
            raise ConfigError(
                f"config {source}: Duplicate key is not allowed among bases. Duplicate keys: "
                f"{reprlib.repr(duplicate)}",
                source=source,
                found=sorted(map(str, duplicate)),
            )
        base_cfg.update(_to_config_dict(sub, scope))
        origins.update(sub_origins)

    if tree is not None:
        namespace: dict[str, Any] = {BASE_KEY: base_cfg}
        # mmengine removes every `_base_ = ...` assignment before it runs the file.
        _Evaluator(source, namespace, sha256, budget).run([stmt for stmt in tree.body if not _is_base_assign(stmt)])
        cfg_dict = {k: v for k, v in namespace.items() if k != BASE_KEY and not k.startswith("__")}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign | ast.AugAssign):
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    if isinstance(target, ast.Name):
                        origins[target.id] = (source, stmt.lineno, sha256)
    else:
        cfg_dict = dict(data_dict)
        origins.update({str(k): (source, None, sha256) for k in cfg_dict})

    if DEPRECATION_KEY in cfg_dict:
        info = cfg_dict.pop(DEPRECATION_KEY)
        message = f"The config file {source} will be deprecated in the future."
        if isinstance(info, Mapping):
            if "expected" in info:
                message += f" Please use {info['expected']} instead."
            if "reference" in info:
                message += f" More information can be found at {info['reference']}"
        logger.info("%s", message)

    cfg_text = f"{filename}\n{raw}"
    measure(cfg_dict, budget, source)
    cfg_dict = _substitute_base_vars(cfg_dict, placeholders, base_cfg, source)
    measure(cfg_dict, budget, source)  # a {{_base_.x}} is a copy of x at each use
    cfg_dict.pop(BASE_KEY, None)
    merged = _merge_a_into_b(cfg_dict, base_cfg)
    result = {k: v for k, v in merged.items() if not str(k).startswith("__")}
    measure(result, budget, source)
    texts.append(cfg_text)
    return result, "\n".join(texts), origins


def _check_custom_imports(cfg: Mapping[str, Any], origins: _Origins, fallback: str) -> None:
    imports = cfg.get("custom_imports")
    if not imports:
        return
    source, line, sha256 = origins.get("custom_imports", (fallback, None, None))
    modules = imports.get("imports") if isinstance(imports, Mapping) else imports
    if isinstance(modules, str):
        modules = [modules]
    if isinstance(modules, list | tuple) and all(
        isinstance(m, str) and (m == "safepredict" or m.startswith("safepredict.")) for m in modules
    ):
        # safepredict's own modules (the training hook registers itself this way): not the
        # artifact author's code, and already importable here.
        return
    raise untrusted(
        f"custom_imports={reprlib.repr(_plain(imports))}: mmengine imports (runs) the modules "
        f"{reprlib.repr(modules)} when it loads this config",
        source,
        line=line,
        sha256=sha256,
    )


def _read(source: str, text: str | None = None) -> tuple[dict[str, Any], str]:
    """``(plain cfg dict, cfg text)`` of file ``source`` (or of ``text``, named ``source``), read
    in a child process under the guard's limits (:mod:`safepredict.frameworks.guard`)."""
    if text is not None and not isinstance(text, str):
        raise ConfigError(
            f"{source} is a {type(text).__name__}, not config text", source=source, found=type(text).__name__
        )
    from safepredict.frameworks import guard

    return guard.run(_read_here, source, text, source=source)


def _read_here(source: str, text: str | None = None) -> tuple[dict[str, Any], str]:
    """:func:`_read` in this process, under the evaluator's own accounting only."""
    try:
        cfg, cfg_text, origins = _file2dict(source, text=text, label=source)
        _check_custom_imports(cfg, origins, source)
        return _plain(cfg), cfg_text
    except SafePredictError:
        raise
    except RecursionError:
        raise ConfigError(f"config {source} is nested too deeply to read", source=source) from None
    except MemoryError:
        raise ConfigError(f"config {source} needs more memory than safepredict allows", source=source) from None
    except (ValueError, TypeError, LookupError, ArithmeticError, AttributeError, OSError) as exc:
        # What the steps around the evaluator (merges, substitutions, decoding) may still raise
        # on a hostile file: typed, never the caller's problem to catch.
        raise ConfigError(f"config {source} could not be read: {_exc_text(exc)}", source=source) from None


def evaluate_file(path: str | Path) -> dict[str, Any]:
    """The config of mmengine file ``path`` as a plain dict, as ``Config.fromfile(path).to_dict()``.

    Raises :class:`~safepredict.errors.UntrustedCodeError` for anything outside the config
    language (code, imports, ``custom_imports``) and :class:`~safepredict.errors.ConfigError`
    for a config mmengine could not read either. Runs none of the file's code.
    """
    return _read(str(path))[0]


def evaluate_text(text: str, source: str = "<config text>") -> dict[str, Any]:
    """The config of mmengine config text (a checkpoint's ``meta['cfg']``) as a plain dict."""
    return _read(source, text)[0]


def _type_problem(value: str) -> str | None:
    """Why mmengine's ``Registry.build`` of ``type=value`` could run code outside a registry, or None.

    ``Registry.get`` falls back to ``get_object_from_string(value)`` for a name no registry
    holds: ``type='subprocess.call'`` calls ``subprocess.call(**args)``, and a bare
    ``type='evilmod'`` imports ``evilmod`` if a module of that name is on ``sys.path``. That
    fallback imports the scope's package and walks attributes, so ``mmdet.X`` reaches anything
    ``mmdet/__init__`` imports: the object it would find must pass :func:`safe_names.resolve`
    (one attribute of the package, defined inside OpenMMLab, callable, no loader).
    """
    import importlib.util

    scope, dot, name = value.partition(".")
    if dot:
        if scope not in OPENMMLAB_SCOPES:
            return f"names {scope!r}, not an OpenMMLab registry scope ({', '.join(sorted(OPENMMLAB_SCOPES))})"
        if not name.isidentifier() or name.startswith("_") or not name[0].isupper():
            return f"is not `scope.ClassName` (mmengine would import {value!r} as a Python object)"
        return _fallback_problem(value, scope, name)
    if not value.isidentifier():
        return None  # not a module name: the fallback's import fails harmlessly
    try:
        found = importlib.util.find_spec(value)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        origin = found.origin or value
        return f"is also the name of the importable module {origin} (mmengine imports it if no registry holds it)"
    return None


def _fallback_problem(value: str, scope: str, name: str) -> str | None:
    """Why what ``get_object_from_string(value)`` finds (if anything) must not be built, or None."""
    import importlib
    import importlib.util
    import sys

    from safepredict.frameworks.safe_names import NameRefused, resolve

    try:
        if scope not in sys.modules and importlib.util.find_spec(scope) is None:
            return None  # the fallback's import fails: Registry.get raises, nothing runs
        package = importlib.import_module(scope)  # an installed OpenMMLab package: mmengine imports it too
        found = getattr(package, name, None)
    except Exception:  # noqa: BLE001 - a package that does not import: the fallback finds nothing either
        return None
    if found is None:
        return None
    try:
        resolved = resolve(value, tuple(f"{s}." for s in sorted(OPENMMLAB_SCOPES)))
    except NameRefused as exc:
        return f"is not in a registry, and mmengine's fallback (get_object_from_string) would take it: {exc}"
    if resolved is not found:
        return "is not the object mmengine's fallback (get_object_from_string) would find under that name"
    return None


def check_mmengine_types(cfg: Any, source: str, trust: bool = False) -> None:
    """Refuse a config whose ``type``/``_scope_``/``default_scope`` would make mmengine run code.

    A config read as data still goes to mmengine's registries when the model and the pipeline
    are built, and ``Registry.build`` imports or calls names no registry holds (see
    :func:`_type_problem`); ``default_scope`` and ``_scope_`` import ``<scope>.registry``.
    Every ``type`` must therefore be a registry name (``ResNet``, ``mmpretrain.ConvNeXt``) and
    every scope an OpenMMLab package. ``trust=True`` skips the check.
    """
    if trust:
        return
    stack: list[tuple[Any, str]] = [(cfg, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, Mapping):
            items = [(str(k), v) for k, v in node.items()]
        elif isinstance(node, list | tuple):
            items = [(f"[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        for key, value in items:
            where = f"{path}{key}" if key.startswith("[") or not path else f"{path}.{key}"
            problem = None
            if key == "type" and isinstance(value, str):
                problem = _type_problem(value)
            elif key in ("_scope_", "default_scope") and isinstance(value, str) and value not in OPENMMLAB_SCOPES:
                problem = f"is not an OpenMMLab scope (mmengine imports {value}.registry)"
            if problem is not None:
                raise UntrustedCodeError(
                    f"config {source}: {where}={value!r} {problem}; building the model would run code "
                    "outside mmengine's registries",
                    expected="a registry name (ResNet, mmpretrain.ConvNeXt) and an OpenMMLab scope",
                    found=value,
                    source=source,
                    fix=trust_fix(source),
                    details={"key": where, "type": value},
                )
            stack.append((value, where))


def _config_class() -> Any:
    try:
        from mmengine.config import Config
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "reading an MMDetection config needs mmengine, which is not importable here",
            expected="mmengine",
            found=str(exc),
            fix="pip install mmengine 'mmcv>=2.0.0rc4,<2.2.0' mmdet (see https://mmdetection.readthedocs.io)",
        ) from exc
    return Config


def _to_config(cfg: dict[str, Any], text: str, filename: str | None, source: str) -> Any:
    Config = _config_class()
    reserved = [k for k in cfg if k in RESERVED_KEYS]
    if reserved:
        raise ConfigError(f"config {source}: {reserved[0]} is reserved for config file", source=source)
    try:
        return Config(cfg, cfg_text=text, filename=filename)
    except RecursionError:
        raise ConfigError(f"config {source} is nested too deeply to read", source=source) from None


def load_file(path: str | Path, *, trust: bool = False) -> Any:
    """An mmengine ``Config`` of file ``path``: read as data, or by mmengine's loader when trusted."""
    source = str(path)
    if trust:
        logger.info("trusted: running mmengine's own config loader on %s", source)
        return _config_class().fromfile(source)
    cfg, text = _read(source)
    check_mmengine_types(cfg, source)
    return _to_config(cfg, text, source, source)


def load_text(text: str, source: str, *, trust: bool = False) -> Any:
    """An mmengine ``Config`` of config text (``.py`` syntax), named ``source`` in messages.

    A checkpoint's ``meta['cfg']``: ``source`` is then ``checkpoint X: meta.cfg``.
    """
    if trust:
        logger.info("trusted: running mmengine's own config loader on %s", source)
        return _config_class().fromstring(text, ".py")
    cfg, cfg_text = _read(source, text)
    check_mmengine_types(cfg, source)
    return _to_config(cfg, cfg_text, None, source)
