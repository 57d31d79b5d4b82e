"""Read YAML configs without running them: Detectron2's yacs files and LazyConfig ``.yaml``.

Detectron2 loads a yacs ``config.yaml`` with ``allow_unsafe=True`` (fvcore falls back to
``yaml.unsafe_load`` on the first ``!!python/...`` tag) and a LazyConfig ``.yaml`` with
``yaml.unsafe_load``: a ``!!python/object/apply:os.system [...]`` in a file beside a
stranger's weights runs the moment the file is read. Here YAML is read only by a
``yaml.SafeLoader`` that refuses every ``python/`` tag with
:class:`~safepredict.errors.UntrustedCodeError`, except an allow-list of plain values the
frameworks' own writers emit (``!!python/tuple``, Detectron2's ``ShapeSpec``). On top of it:

- :func:`merge_from_file`: ``cfg.merge_from_file(path)`` of a Detectron2 ``CfgNode``, with
  fvcore's ``_BASE_`` inheritance and Detectron2's config-version upgrade, the same result;
- :func:`lazy_load`: ``LazyConfig.load(path)`` of a ``.yaml`` (a ``.py`` is Python: trusted only);
- :func:`check_lazy_targets`: a LazyConfig's ``_target_`` callables, limited to the
  ``detectron2.``, ``torch.``, ``torchvision.`` and ``fvcore.`` namespaces (and never their
  loaders of files, URLs or code) unless trusted.
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
from safepredict.frameworks.safe_config import trust_fix, untrusted

__all__ = [
    "LAZY_TARGET_NAMESPACES",
    "SafeLoader",
    "check_lazy_targets",
    "lazy_load",
    "load_yaml_with_base",
    "merge_from_file",
    "safe_load",
]

logger = logging.getLogger("safepredict")

BASE_KEY = "_BASE_"
PYTHON_TAG = "tag:yaml.org,2002:python/"
SHAPE_SPEC = "detectron2.layers.shape_spec.ShapeSpec"
MAX_YAML_CHARS = 8_000_000
# Aliases share nodes; a document whose aliases expand past this is a YAML bomb, not a config.
MAX_EXPANDED_NODES = 1_000_000
MAX_BASE_DEPTH = 32
# What would have read the YAML instead: Detectron2 (yacs and LazyConfig) and mmengine both
# construct Python objects from tags.
_UNSAFE = "the frameworks' own YAML loaders (Detectron2's yaml.unsafe_load, mmengine's yaml.Loader)"

LAZY_TARGET_NAMESPACES = ("detectron2.", "torch.", "torchvision.", "fvcore.")
# Inside those namespaces, the callables that load files, URLs, pickles or code (torch.load,
# torch.hub.load, LazyConfig.load, model_zoo.get_config, locate, ...): a config that names
# one is code, whatever its namespace.
_DENIED_PARTS = frozenset(
    {
        "checkpoint",
        "config",
        "cpp_extension",
        "distributed",
        "env",
        "file_io",
        "hub",
        "jit",
        "launch",
        "model_zoo",
        "multiprocessing",
        "package",
        "registry",
        "serialization",
    }
)
_DENIED_NAMES = frozenset(
    {
        "download_url_to_file",
        "import_module",
        "launch",
        "instantiate",
        "load",
        "load_inline",
        "load_library",
        "load_state_dict_from_url",
        "load_url",
        "loads",
        "locate",
        "save",
    }
)


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


def safe_load(text: str | bytes, source: str = "<yaml>") -> Any:
    """The YAML document ``text`` (from ``source``) as plain data, through :class:`SafeLoader`.

    Raises :class:`UntrustedCodeError` for a refused ``python/`` tag and
    :class:`ConfigError` for anything else that is not plain YAML.
    """
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"YAML {source} is larger than safepredict reads ({MAX_YAML_CHARS} chars)", source=source)
    loader: SafeLoader | None = None
    try:
        # The reader decodes (and may refuse) the first bytes already in the constructor.
        loader = SafeLoader(text)
        loader.source = source
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


def _read(path: str) -> Any:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {path} could not be read: {exc}", source=path) from None
    return safe_load(text, path)


# --------------------------------------------------------------------------- yacs (fvcore)


def load_yaml_with_base(filename: str | Path, *, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """fvcore's ``CfgNode.load_yaml_with_base(filename)``, read through :class:`SafeLoader`.

    ``_BASE_`` (a path or a list) is relative to the file unless absolute; ``~`` is expanded.
    A ``.py`` base (yacs would import it) and an ``http(s)://`` base (fetched from the
    network) are refused with :class:`UntrustedCodeError`.
    """
    filename = str(filename)
    if filename in _chain or len(_chain) > MAX_BASE_DEPTH:
        raise ConfigError(f"config {filename} inherits itself through _BASE_ ({' -> '.join(_chain)})", source=filename)
    cfg = _read(filename)
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
        return load_yaml_with_base(base, _chain=(*_chain, filename))

    if BASE_KEY in cfg:
        bases = cfg[BASE_KEY]
        if isinstance(bases, list):
            base_cfg: dict[str, Any] = {}
            for base in bases:
                merge_a_into_b(load_base(base), base_cfg)
        else:
            base_cfg = load_base(bases)
        del cfg[BASE_KEY]
        merge_a_into_b(cfg, base_cfg)
        return base_cfg
    return cfg


def merge_from_file(cfg: Any, filename: str | Path) -> None:
    """``cfg.merge_from_file(filename)`` of a Detectron2 ``CfgNode``, with no unsafe YAML.

    The same steps as ``detectron2.config.CfgNode.merge_from_file``: fvcore's ``_BASE_``
    merge, ``VERSION`` (guessed when absent) and the upgrade of an older config. Raises what
    that raises for a legitimate file (``KeyError`` for a key ``cfg`` does not know).
    """
    filename = str(filename)
    if not Path(filename).is_file():
        raise ConfigError(f"Config file '{filename}' does not exist!", source=filename)
    loaded = load_yaml_with_base(filename)
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
    data = _read(filename)
    try:
        from omegaconf import OmegaConf
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "reading a LazyConfig needs omegaconf, which is not importable here",
            expected="omegaconf",
            found=str(exc),
            fix="pip install 'omegaconf<2.4' (Detectron2's dependency)",
        ) from exc
    try:
        return OmegaConf.create(data, flags={"allow_objects": True})
    except Exception as exc:  # noqa: BLE001 - omegaconf's errors have no common base worth naming
        raise ConfigError(f"LazyConfig {filename} could not be loaded: {exc}", source=filename) from None


def _target_name(target: Any) -> str | None:
    if isinstance(target, str):
        return target
    if callable(target):
        module = getattr(target, "__module__", None)
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        return f"{module}.{name}" if module and name else None
    return None


def _target_allowed(name: str) -> bool:
    if not name.startswith(LAZY_TARGET_NAMESPACES):
        return False
    parts = name.split(".")
    if any(not p or p.startswith("_") for p in parts):
        return False
    return not (_DENIED_PARTS.intersection(parts[1:-1]) or parts[-1] in _DENIED_NAMES)


def check_lazy_targets(cfg: Any, source: str, trust: bool = False) -> None:
    """Refuse a LazyConfig whose ``_target_`` callables lie outside the allowed namespaces.

    Every ``_target_`` of ``cfg`` (a ``DictConfig``, or dicts and lists) must be a dotted name
    (or a callable) under ``detectron2.``, ``torch.``, ``torchvision.`` or ``fvcore.``, and not
    one of their loaders of files, URLs, pickles or code (``torch.load``, ``torch.hub.*``,
    ``LazyConfig.load``, ``model_zoo.get_config``, ``locate``, private names). Otherwise
    :class:`UntrustedCodeError` names the key path and the target. ``trust=True`` skips it.
    """
    if trust:
        return
    try:
        from omegaconf import DictConfig, ListConfig
    except ImportError:  # plain dicts and lists only
        DictConfig = ListConfig = ()  # type: ignore[assignment,misc]
    stack: list[tuple[Any, str]] = [(cfg, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        try:
            if isinstance(node, Mapping | DictConfig):
                items = [(str(k), node[k]) for k in node]
            elif isinstance(node, list | tuple | ListConfig):
                items = [(f"[{i}]", v) for i, v in enumerate(node)]
            else:
                continue
        except SafePredictError:
            raise
        except Exception as exc:  # noqa: BLE001 - an interpolation that does not resolve
            where = path or "<root>"
            raise ConfigError(f"LazyConfig {source}: {where} could not be read: {exc}", source=source) from None
        for key, value in items:
            where = f"{path}{key}" if key.startswith("[") or not path else f"{path}.{key}"
            if key == "_target_":
                name = _target_name(value)
                if name is None:
                    raise untrusted(
                        f"{where} is a {type(value).__name__} ({reprlib.repr(value)}), not the dotted name of a "
                        "callable (a computed _target_ is code)",
                        source,
                        loader="Detectron2's instantiate",
                    )
                if not _target_allowed(name):
                    raise UntrustedCodeError(
                        f"LazyConfig {source}: {where} = {name!r} would be called by instantiate(); safepredict "
                        f"instantiates only callables under {', '.join(LAZY_TARGET_NAMESPACES)} (and none of "
                        "their loaders of files, URLs or code) from a config it does not trust",
                        expected=f"a callable under {' '.join(LAZY_TARGET_NAMESPACES)}",
                        found=name,
                        source=source,
                        fix=trust_fix(source),
                        details={"key": where, "target": name},
                    )
            stack.append((value, where))
