"""Read YAML configs without running them: Detectron2's yacs files and LazyConfig ``.yaml``.

Detectron2 loads a yacs ``config.yaml`` with ``allow_unsafe=True`` (fvcore falls back to
``yaml.unsafe_load`` on the first ``!!python/...`` tag) and a LazyConfig ``.yaml`` with
``yaml.unsafe_load``: a ``!!python/object/apply:os.system [...]`` in a file beside a
stranger's weights runs the moment the file is read. Here YAML is read only by a
``yaml.SafeLoader`` that refuses every ``python/`` tag with
:class:`~safepredict.errors.UntrustedCodeError`, except an allow-list of plain values the
frameworks' own writers emit (``!!python/tuple``, Detectron2's ``ShapeSpec``), and
``!!python/object/apply:eval`` of one string, which is evaluated as config data by the
mmengine-config evaluator (Detectron2's ``Base-RetinaNet.yaml`` computes its anchor sizes so).
Nesting is refused past :data:`MAX_YAML_DEPTH` before anything composes a node. On top of it:

- :func:`merge_from_file`: ``cfg.merge_from_file(path)`` of a Detectron2 ``CfgNode``, with
  fvcore's ``_BASE_`` inheritance and Detectron2's config-version upgrade, the same result
  (:func:`read_yacs`, under the guard of :mod:`safepredict.frameworks.guard`, then
  :func:`merge_loaded`);
- :func:`lazy_load`: ``LazyConfig.load(path)`` of a ``.yaml`` (a ``.py`` is Python: trusted only),
  read under the guard with its interpolations shown to resolve within the limits;
- :func:`check_lazy_targets`: a LazyConfig's ``_target_`` callables, found by import
  (:func:`safepredict.frameworks.safe_names.resolve`) in the ``detectron2.``, ``torch.``,
  ``torchvision.`` and ``fvcore.`` namespaces (and never their loaders of files, URLs or code)
  unless trusted.
"""

from __future__ import annotations

import logging
import os
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from safepredict.errors import ConfigError, FrameworkNotInstalled, SafePredictError, UntrustedCodeError
from safepredict.frameworks.safe_config import Budget, measure, read_config_bytes, trust_fix, untrusted
from safepredict.frameworks.safe_names import DENIED_NAMES, DENIED_PARTS, NameRefused, resolve, same_object

__all__ = [
    "LAZY_TARGET_NAMESPACES",
    "SafeLoader",
    "check_lazy_targets",
    "lazy_load",
    "load_yaml_with_base",
    "merge_from_file",
    "merge_loaded",
    "read_yacs",
    "safe_load",
]

logger = logging.getLogger("safepredict")

BASE_KEY = "_BASE_"
PYTHON_TAG = "tag:yaml.org,2002:python/"
SHAPE_SPEC = "detectron2.layers.shape_spec.ShapeSpec"
MAX_YAML_CHARS = 2_000_000  # one document (Detectron2's config.yaml: ~10 kB; a saved LazyConfig: ~30 kB)
# Aliases share nodes; a document whose aliases expand past this is a YAML bomb, not a config.
MAX_EXPANDED_NODES = 1_000_000
MAX_BASE_DEPTH = 32
MAX_YAML_DEPTH = 100  # nesting of collections; the deepest config the frameworks write has ~10
MAX_SEXAGESIMAL_CHARS = 64  # YAML 1.1 base-60 numbers (1:30:00): PyYAML's conversion is quadratic
MAX_RESOLVED_CHARS = 16_000_000  # a LazyConfig's text once its ${...} interpolations are resolved
# What would have read the YAML instead: Detectron2 (yacs and LazyConfig) and mmengine both
# construct Python objects from tags.
_UNSAFE = "the frameworks' own YAML loaders (Detectron2's yaml.unsafe_load, mmengine's yaml.Loader)"

LAZY_TARGET_NAMESPACES = ("detectron2.", "torch.", "torchvision.", "fvcore.")
# Inside those namespaces, the callables that load files, URLs, pickles or code (torch.load,
# torch.hub.load, LazyConfig.load, model_zoo.get_config, locate, ...): a config that names
# one is code, whatever its namespace (safe_names.DENIED_PARTS / DENIED_NAMES).
_DENIED_PARTS = DENIED_PARTS
_DENIED_NAMES = DENIED_NAMES


# --------------------------------------------------------------------------- the loader


def _line(node: yaml.Node) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


# libyaml's parser where PyYAML was built with it (the wheels are): ~10x faster on a config.yaml
# than the pure-Python one, and the same constructors, so the same allow-list.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SafeLoader(_BASE_LOADER):
    """``yaml.SafeLoader`` that refuses every ``!!python/...`` tag but a short allow-list.

    Allowed: ``!!python/tuple`` and the plain scalars (``python/str``, ``python/int``, ...),
    which ``yaml.dump`` writes for plain data, and
    ``!!python/object:detectron2.layers.shape_spec.ShapeSpec``, which ``LazyConfig.save``
    writes for a Mask R-CNN (built as the real ``ShapeSpec`` when detectron2 is importable,
    else as a dict of its fields).
    """

    source = "<yaml>"
    budget: Budget = Budget("<yaml>")

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node, self.source)
        return self.construct_document(node)


def _refuse(loader: SafeLoader, suffix: str, node: yaml.Node) -> Any:
    tag = f"!!python/{suffix}"
    what = {
        "object/apply:": "calls a Python function",
        "object/new:": "creates a Python object",
        "object:": "creates a Python object",
        "name:": "names a Python object",
        "module:": "imports a Python module",
    }
    verb = next((v for k, v in what.items() if suffix.startswith(k)), "is a Python-specific tag")
    raise untrusted(f"the YAML tag {tag} {verb}", loader.source, line=_line(node), loader=_UNSAFE)


def _tuple(loader: SafeLoader, node: yaml.Node) -> tuple[Any, ...]:
    if not isinstance(node, yaml.SequenceNode):
        where = f"{loader.source}, line {_line(node)}"
        raise ConfigError(f"{where}: !!python/tuple on a non-sequence", source=loader.source)
    return tuple(loader.construct_sequence(node))


def _shape_spec(loader: SafeLoader, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.MappingNode):
        where = f"{loader.source}, line {_line(node)}"
        raise ConfigError(f"{where}: a ShapeSpec that is not a mapping", source=loader.source)
    state = loader.construct_mapping(node, deep=True)
    fields = ("channels", "height", "width", "stride")
    for key, value in state.items():
        if key not in fields or not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
            raise ConfigError(
                f"{loader.source}, line {_line(node)}: a ShapeSpec with {key!r}: {reprlib.repr(value)} "
                "(a ShapeSpec holds only int or null channels/height/width/stride)",
                source=loader.source,
            )
    try:
        from detectron2.layers.shape_spec import ShapeSpec
    except ImportError:
        return dict(state)
    return ShapeSpec(**state)


def _scalar(kind: type) -> Any:
    def construct(loader: SafeLoader, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(f"{loader.source}, line {_line(node)}: !!python/{kind.__name__} on a collection")
        value = loader.construct_scalar(node)
        if kind is bool:
            return loader.construct_yaml_bool(node)
        if kind is type(None):
            return None
        if kind is str:
            return value
        return kind(value)

    return construct


def _eval(loader: SafeLoader, node: yaml.Node) -> Any:
    """``!!python/object/apply:eval ["expression"]``, the expression evaluated as config data.

    Detectron2's own ``Base-RetinaNet.yaml`` computes its anchor sizes so (a list comprehension of
    numbers). The expression goes through safepredict's mmengine-config evaluator, with no names:
    numbers, displays, comprehensions, arithmetic evaluate as Python would; a call, an import, an
    attribute is refused as everywhere else, as :class:`UntrustedCodeError`.
    """
    import ast

    from safepredict.frameworks.safe_config import _Evaluator, _parse

    line = _line(node)
    args = node.value if isinstance(node, yaml.SequenceNode) else None
    if not args or len(args) != 1 or not isinstance(args[0], yaml.ScalarNode) or args[0].tag != "tag:yaml.org,2002:str":
        return _refuse(loader, "object/apply:eval", node)
    expression = args[0].value
    where = f"{loader.source}, line {line}"
    tree = _parse(f"__value__ = ({expression}\n)", where)
    statement = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(statement, ast.Assign):
        raise untrusted("!!python/object/apply:eval of more than one expression", loader.source, line=line,
                        loader=_UNSAFE)
    evaluator = _Evaluator(where, {}, None, loader.budget)
    evaluator.line = line
    try:
        return evaluator.eval(statement.value)
    except SafePredictError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError, MemoryError) as exc:
        evaluator.fail(f"{type(exc).__name__} in !!python/object/apply:eval", statement)


def _yaml_int(loader: SafeLoader, node: yaml.Node) -> Any:
    value = loader.construct_scalar(node)
    if isinstance(value, str) and ":" in value and len(value) > MAX_SEXAGESIMAL_CHARS:
        raise ConfigError(
            f"{loader.source}, line {_line(node)}: a base-60 number of {len(value)} characters (YAML 1.1 "
            f"1:30:00); safepredict reads at most {MAX_SEXAGESIMAL_CHARS}",
            source=loader.source,
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _yaml_float(loader: SafeLoader, node: yaml.Node) -> Any:
    value = loader.construct_scalar(node)
    if isinstance(value, str) and ":" in value and len(value) > MAX_SEXAGESIMAL_CHARS:
        raise ConfigError(
            f"{loader.source}, line {_line(node)}: a base-60 number of {len(value)} characters; safepredict "
            f"reads at most {MAX_SEXAGESIMAL_CHARS}",
            source=loader.source,
        )
    return yaml.SafeLoader.construct_yaml_float(loader, node)


SafeLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)
SafeLoader.add_constructor("tag:yaml.org,2002:float", _yaml_float)
SafeLoader.add_constructor(f"{PYTHON_TAG}object/apply:eval", _eval)
SafeLoader.add_constructor(f"{PYTHON_TAG}tuple", _tuple)
SafeLoader.add_constructor(f"{PYTHON_TAG}object:{SHAPE_SPEC}", _shape_spec)
for _name, _kind in (("str", str), ("unicode", str), ("int", int), ("float", float), ("bool", bool)):
    SafeLoader.add_constructor(f"{PYTHON_TAG}{_name}", _scalar(_kind))
SafeLoader.add_constructor(f"{PYTHON_TAG}none", _scalar(type(None)))
SafeLoader.add_multi_constructor(PYTHON_TAG, _refuse)


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a node graph that is recursive, or whose aliases expand past the limit."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"YAML {source} expands its aliases to more than {MAX_EXPANDED_NODES} values (a YAML bomb?)",
                    source=source,
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"YAML {source}, line {_line(node)}: a recursive alias", source=source)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _check_depth(text: str | bytes, source: str) -> None:
    """Refuse a document nested deeper than :data:`MAX_YAML_DEPTH` before anything composes it.

    libyaml's event parser keeps its state on the heap and stops at our depth, where the composer
    (C in the libyaml build) recurses on the C stack and crashes the interpreter on deep input
    with some PyYAML/libyaml builds. Only the events are counted here: no node is built.
    """
    depth = 0
    starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    for event in yaml.parse(text, Loader=_BASE_LOADER):
        if isinstance(event, starts):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                mark = getattr(event, "start_mark", None)
                line = f", line {mark.line + 1}" if mark is not None else ""
                raise ConfigError(
                    f"YAML {source}{line} is nested too deeply to read (more than {MAX_YAML_DEPTH} levels; "
                    "the frameworks write about 10)",
                    source=source,
                    details={"limit": "depth"},
                )
        elif isinstance(event, ends):
            depth -= 1


def safe_load(text: str | bytes, source: str = "<yaml>", budget: Budget | None = None) -> Any:
    """The YAML document ``text`` (from ``source``) as plain data, through :class:`SafeLoader`.

    Raises :class:`UntrustedCodeError` for a refused ``python/`` tag and
    :class:`ConfigError` for anything else that is not plain YAML.
    """
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"YAML {source} is larger than safepredict reads ({MAX_YAML_CHARS} chars)", source=source)
    loader: SafeLoader | None = None
    try:
        _check_depth(text, source)
        # The reader decodes (and may refuse) the first bytes already in the constructor.
        loader = SafeLoader(text)
        loader.source = source
        loader.budget = budget if budget is not None else Budget(source)
        return loader.get_single_data()
    except SafePredictError:
        raise
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own limit (the pure-Python parser recurses)
            raise ConfigError(f"YAML {source} is nested too deeply to read", source=source) from None
        raise ConfigError(f"YAML {source} could not be read: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError(f"YAML {source} is nested too deeply to read", source=source) from None
    except Exception as exc:  # noqa: BLE001 - SafeConstructor's own failures on malformed scalars
        # (dates, base-60 numbers, unhashable keys) are ValueError, TypeError, KeyError, ...
        raise ConfigError(f"YAML {source} could not be read: {type(exc).__name__}: {exc}", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _read(path: str, budget: Budget | None = None) -> Any:
    """The YAML file ``path`` (a regular file, size checked before reading) as plain data."""
    data = read_config_bytes(path, path, MAX_YAML_CHARS)
    if budget is not None:
        budget.file(path, len(data))
    return safe_load(data, path, budget)


# --------------------------------------------------------------------------- yacs (fvcore)


def load_yaml_with_base(
    filename: str | Path, *, _chain: tuple[str, ...] = (), _budget: Budget | None = None
) -> dict[str, Any]:
    """fvcore's ``CfgNode.load_yaml_with_base(filename)``, read through :class:`SafeLoader`.

    ``_BASE_`` (a path or a list) is relative to the file unless absolute; ``~`` is expanded.
    A ``.py`` base (yacs would import it) and an ``http(s)://`` base (fetched from the
    network) are refused with :class:`UntrustedCodeError`. Bases must be regular files; all
    the files of one read together are capped (count, text, depth: ``safe_config.Budget``).
    """
    filename = str(filename)
    budget = _budget if _budget is not None else Budget(filename)
    if filename in _chain:
        raise ConfigError(f"config {filename} inherits itself through _BASE_ ({' -> '.join(_chain)})", source=filename)
    if len(_chain) > MAX_BASE_DEPTH:
        raise ConfigError(
            f"config {filename}: _BASE_ chain deeper than {MAX_BASE_DEPTH} ({' -> '.join(_chain[:3])} ...)",
            source=filename,
            details={"limit": "base depth"},
        )
    cfg = _read(filename, budget)
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"Detectron2 config {filename} holds a {type(cfg).__name__}, not a mapping of keys",
            found=type(cfg).__name__,
            source=filename,
        )

    def merge_a_into_b(a: dict[str, Any], b: dict[str, Any]) -> None:
        for k, v in a.items():
            if isinstance(v, dict) and k in b:
                if not isinstance(b[k], dict):
                    raise ConfigError(f"Cannot inherit key '{k}' from base! ({filename})", source=filename)
                merge_a_into_b(v, b[k])
            else:
                b[k] = v

    def load_base(base: Any) -> dict[str, Any]:
        if not isinstance(base, str):
            raise ConfigError(f"config {filename}: _BASE_ must be a path, found {reprlib.repr(base)}", source=filename)
        if base.startswith(("https://", "http://")):
            raise untrusted(f"_BASE_: {base} fetches a config from the network", filename, loader="fvcore's CfgNode")
        if base.endswith(".py"):
            raise untrusted(f"_BASE_: {base} is a Python file (yacs imports .py configs)", filename, loader="yacs")
        if base.startswith("~"):
            base = os.path.expanduser(base)
        if not base.startswith("/"):
            base = os.path.join(os.path.dirname(filename), base)
        return load_yaml_with_base(base, _chain=(*_chain, filename), _budget=budget)

    if BASE_KEY in cfg:
        bases = cfg[BASE_KEY]
        if isinstance(bases, list):
            measure(bases, budget, filename, "_BASE_")
            base_cfg: dict[str, Any] = {}
            for base in bases:
                merge_a_into_b(load_base(base), base_cfg)
        else:
            base_cfg = load_base(bases)
        del cfg[BASE_KEY]
        merge_a_into_b(cfg, base_cfg)
        measure(base_cfg, budget, filename)
        return base_cfg
    measure(cfg, budget, filename)
    return cfg


def _yacs_decodes(value: Any, budget: Budget, source: str) -> None:
    """Run, on every string leaf, the ``literal_eval`` that yacs's merge runs on it.

    Inside the guard, so a string whose decoding blows up (deep brackets, a huge literal) ends
    here, typed, before the merge in the caller's process repeats it.
    """
    from ast import literal_eval

    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, str):
            budget.spend(len(node) // 16 + 1, source)
            try:
                literal_eval(node)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, ArithmeticError):
                # yacs keeps the string where literal_eval raises ValueError or SyntaxError; the
                # others end typed in merge_loaded.
                pass


def _read_yacs_here(filename: str) -> dict[str, Any]:
    budget = Budget(filename)
    loaded = load_yaml_with_base(filename, _budget=budget)
    _yacs_decodes(loaded, budget, filename)
    return loaded


def read_yacs(filename: str | Path) -> dict[str, Any]:
    """A yacs file with its ``_BASE_`` merged, as plain data: :func:`load_yaml_with_base` under the guard.

    The read runs in a child process under :mod:`safepredict.frameworks.guard`'s limits. Its
    result depends only on the bytes of the file and of its bases: a caller that caches it
    (keyed by their sha256) skips this read and the guard, and hands the cached dict to
    :func:`merge_loaded`.
    """
    from safepredict.frameworks import guard

    filename = str(filename)
    if not Path(filename).is_file():
        raise ConfigError(f"Config file '{filename}' does not exist!", source=filename)
    return guard.run(_read_yacs_here, filename, source=filename)


def merge_from_file(cfg: Any, filename: str | Path) -> None:
    """``cfg.merge_from_file(filename)`` of a Detectron2 ``CfgNode``, with no unsafe YAML.

    The same steps as ``detectron2.config.CfgNode.merge_from_file``: fvcore's ``_BASE_``
    merge, ``VERSION`` (guessed when absent) and the upgrade of an older config. Raises what
    that raises for a legitimate file (``KeyError`` for a key ``cfg`` does not know).
    """
    merge_loaded(cfg, read_yacs(filename), str(filename))


def merge_loaded(cfg: Any, loaded: dict[str, Any], filename: str | Path) -> None:
    """The merge step of :func:`merge_from_file`, on what :func:`read_yacs` returned."""
    filename = str(filename)
    try:
        _merge_loaded(cfg, loaded, filename)
    except (SafePredictError, KeyError):
        raise  # KeyError: a key cfg does not know (load_config retries with new keys allowed)
    except (RecursionError, MemoryError, ValueError, TypeError, AttributeError, ArithmeticError) as exc:
        text = f"{type(exc).__name__}: {reprlib.repr(exc.args[0] if exc.args else '')}"
        raise ConfigError(f"Detectron2 config {filename} could not be merged: {text}", source=filename) from None


def _merge_loaded(cfg: Any, loaded: dict[str, Any], filename: str) -> None:
    try:
        loaded_cfg = type(cfg)(loaded)
    except AssertionError as exc:  # yacs: a value of a type a CfgNode cannot hold
        raise ConfigError(f"Detectron2 config {filename}: {exc}", source=filename) from None
    from detectron2.config.defaults import _C

    if _C.VERSION != cfg.VERSION:
        raise ConfigError("CfgNode.merge_from_file is only allowed on a config object of latest version!")
    loaded_ver = loaded_cfg.get("VERSION", None)
    if loaded_ver is None:
        from detectron2.config.compat import guess_version

        loaded_ver = guess_version(loaded_cfg, filename)
    if not isinstance(loaded_ver, int) or loaded_ver > cfg.VERSION:
        raise ConfigError(f"Cannot merge a v{loaded_ver} config into a v{cfg.VERSION} config.", source=filename)
    if loaded_ver == cfg.VERSION:
        cfg.merge_from_other_cfg(loaded_cfg)
        return
    from detectron2.config.compat import downgrade_config, upgrade_config

    logger.warning(
        "Loading an old v%s config file '%s' by automatically upgrading to v%s.", loaded_ver, filename, cfg.VERSION
    )
    old_self = downgrade_config(cfg, to_version=loaded_ver)
    old_self.merge_from_other_cfg(loaded_cfg)
    new_config = upgrade_config(old_self)
    cfg.clear()
    cfg.update(new_config)


# --------------------------------------------------------------------------- LazyConfig


def lazy_load(filename: str | Path, *, trust: bool = False) -> Any:
    """``LazyConfig.load(filename)``: a ``.yaml`` read safely, a ``.py`` only when trusted.

    A ``.yaml`` becomes ``OmegaConf.create(data, flags={"allow_objects": True})``, as
    Detectron2 does after its ``yaml.unsafe_load``; the ``_target_`` check is
    :func:`check_lazy_targets`, which the caller runs.
    """
    filename = str(filename).replace("/./", "/")  # as LazyConfig.load
    suffix = os.path.splitext(filename)[1]
    if suffix not in (".py", ".yaml", ".yml"):
        raise ConfigError(f"Config file {filename} has to be a python or yaml file.", source=filename, found=suffix)
    if trust:
        logger.info("trusted: running Detectron2's own config loader (LazyConfig.load) on %s", filename)
        from detectron2.config import LazyConfig

        return LazyConfig.load(filename)
    if suffix == ".py":
        raise untrusted(
            "a LazyConfig .py file is Python; LazyConfig.load executes it",
            filename,
            loader="Detectron2's LazyConfig.load",
        )
    from safepredict.frameworks import guard

    _omegaconf()
    data = guard.run(_read_lazy_here, filename, source=filename)
    return _lazy_create(data, filename)


def _omegaconf() -> Any:
    try:
        from omegaconf import OmegaConf
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "reading a LazyConfig needs omegaconf, which is not importable here",
            expected="omegaconf",
            found=str(exc),
            fix="pip install 'omegaconf<2.4' (Detectron2's dependency)",
        ) from exc
    return OmegaConf


def _lazy_create(data: Any, filename: str) -> Any:
    try:
        return _omegaconf().create(data, flags={"allow_objects": True})
    except Exception as exc:  # noqa: BLE001 - omegaconf's errors have no common base worth naming
        text = f"{type(exc).__name__}: {reprlib.repr(str(exc)[:300])}"
        raise ConfigError(f"LazyConfig {filename} could not be loaded: {text}", source=filename) from None


def _read_lazy_here(filename: str) -> Any:
    """The data of a LazyConfig ``.yaml``, with its ``${...}`` interpolations shown to resolve
    within the limits (the target check and instantiate() resolve them later)."""
    budget = Budget(filename)
    data = _read(filename, budget)
    cfg = _lazy_create(data, filename)
    resolved = _resolved(cfg, filename)
    total = 0
    stack = [resolved]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, str):
            total += len(node)
            if total > MAX_RESOLVED_CHARS:
                raise ConfigError(
                    f"LazyConfig {filename}: its interpolations resolve to more than {MAX_RESOLVED_CHARS} "
                    "characters (safepredict's limit)",
                    source=filename,
                    details={"limit": "interpolation"},
                )
    measure(resolved, budget, filename)
    return data


def _resolved(cfg: Any, source: str) -> Any:
    """``OmegaConf.to_container(cfg, resolve=True)``: every ``${...}`` as instantiate() would see it."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:
        return cfg
    if not isinstance(cfg, DictConfig | ListConfig):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except SafePredictError:
        raise
    except RecursionError:
        raise ConfigError(f"LazyConfig {source}: its interpolations nest too deeply", source=source) from None
    except Exception as exc:  # noqa: BLE001 - an interpolation that does not resolve
        text = f"{type(exc).__name__}: {reprlib.repr(str(exc)[:300])}"
        raise ConfigError(f"LazyConfig {source}: could not be resolved: {text}", source=source) from None


def _target_name(target: Any) -> str | None:
    if isinstance(target, str):
        return target
    if callable(target):
        module = getattr(target, "__module__", None)
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        return f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else None
    return None


def _target_allowed(name: str) -> bool:
    """Whether ``name`` passes the name rules alone (namespace, no private part, no loader)."""
    try:
        _target_problem(name, None, resolve_it=False)
    except NameRefused:
        return False
    return True


def _locate() -> Any:
    try:
        from detectron2.utils.registry import locate
    except ImportError:
        return None
    return locate


def _target_problem(name: str, target: Any, *, resolve_it: bool = True) -> None:
    """Raise :class:`NameRefused` unless ``name`` (the ``_target_``, or the name of callable
    ``target``) resolves by import (:func:`safe_names.resolve`) to what instantiate() would call."""
    from safepredict.frameworks.safe_names import MAX_NAME_CHARS, inside

    if not inside(name.rpartition(".")[0], LAZY_TARGET_NAMESPACES) or len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"{name[:80]!r} is not under {', '.join(LAZY_TARGET_NAMESPACES)}")
    parts = name.split(".")
    if any(not p.isidentifier() or p.startswith("_") for p in parts):
        raise NameRefused(f"{name!r} has a part that is not a public Python name")
    if DENIED_PARTS.intersection(parts[1:-1]) or parts[-1] in DENIED_NAMES:
        raise NameRefused(f"{name!r} is a loader of files, URLs or code")
    if not resolve_it:
        return
    obj = resolve(name, LAZY_TARGET_NAMESPACES)
    if target is not None and not isinstance(target, str):
        if not same_object(obj, target):
            raise NameRefused(f"{name!r} is not where the callable given as _target_ is found by import")
        return
    # instantiate() finds a string target with Detectron2's locate (pydoc's attribute walk, then
    # hydra's): it must land on the very object found by import. Every module it imports on the
    # way is a prefix of this name, inside the namespace.
    locate = _locate()
    if locate is not None:
        try:
            located = locate(name)
        except Exception:  # noqa: BLE001 - it could not locate it: instantiate() fails the same way
            located = None
        if not same_object(located, obj):
            raise NameRefused(f"Detectron2's locate({name!r}) finds another object than the import does")


def check_lazy_targets(cfg: Any, source: str, trust: bool = False) -> None:
    """Refuse a LazyConfig whose ``_target_`` callables lie outside the allowed namespaces.

    Every ``_target_`` of ``cfg`` (a ``DictConfig``, or dicts and lists), its ``${...}``
    interpolations resolved, must be a dotted name (or a callable) found by importing a module
    under ``detectron2.``, ``torch.``, ``torchvision.`` or ``fvcore.`` and taking one attribute
    of it, defined inside those namespaces (:func:`safe_names.resolve`: ``torch.os.system`` is
    refused), the object Detectron2's ``locate`` finds too, and not one of their loaders of
    files, URLs, pickles or code (``torch.load``, ``torch.hub.*``, ``LazyConfig.load``,
    ``model_zoo.get_config``, ``locate``, private names). Otherwise
    :class:`UntrustedCodeError` names the key path and the target. ``trust=True`` skips it.
    """
    if trust:
        return
    stack: list[tuple[Any, str]] = [(_resolved(cfg, source), "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            items = [(str(k), v) for k, v in node.items()]
        elif isinstance(node, list | tuple):
            items = [(f"[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        for key, value in items:
            where = f"{path}{key}" if key.startswith("[") or not path else f"{path}.{key}"
            if key == "_target_":
                _check_target(value, where, source)
            stack.append((value, where))


def _check_target(value: Any, where: str, source: str) -> None:
    name = _target_name(value)
    if name is None:
        raise untrusted(
            f"{where} is a {type(value).__name__} ({reprlib.repr(value)}), not the dotted name of a "
            "callable (a computed _target_ is code)",
            source,
            loader="Detectron2's instantiate",
        )
    try:
        _target_problem(name, value)
    except NameRefused as exc:
        shown = repr(name) if len(name) <= 256 else repr(name[:256]) + "..."
        raise UntrustedCodeError(
            f"LazyConfig {source}: {where} = {shown} would be called by instantiate(); safepredict "
            f"instantiates only callables found by import under {', '.join(LAZY_TARGET_NAMESPACES)} (and none of "
            f"their loaders of files, URLs or code) from a config it does not trust: {exc}",
            expected=f"a callable under {' '.join(LAZY_TARGET_NAMESPACES)}",
            found=name,
            source=source,
            fix=trust_fix(source),
            details={"key": where, "target": name},
        ) from None
