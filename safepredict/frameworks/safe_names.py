"""Turn a dotted name from an untrusted config into an object: by import, never by attribute walk.

Detectron2's ``locate`` (``pydoc.locate``) and mmengine's ``get_object_from_string`` import the
longest module prefix of a name and then follow attributes: ``torch`` imports ``os`` at top
level, so ``torch.os.system`` is ``os.system``, and any module an allowed package imports is
reachable under that package's name. Here a name ``a.b.c.D`` is accepted only if

- ``a.b.c`` is a module inside the allowed namespace, found by importing exactly that path
  (and ``sys.modules`` holds it under that name, not as an alias of another module);
- ``D`` is ONE attribute of it, read from the module's own namespace (no ``__getattr__``), or
  ``a.b.C.m`` where ``C`` is such an attribute and a class, and ``m`` a function (static or class
  method) defined in a class of ``C``'s MRO (Detectron2's zoo names ``ResNet.make_default_stages``);
- the object is callable, not a module, and its own ``__module__`` (where it was defined) is
  inside the namespace too: a re-export from outside (``from os import system``) is refused;
- neither the name nor the object's home is a loader of files, URLs, pickles or code
  (``torch.load``, ``torch.hub``, ``LazyConfig.load``, ``locate``, private names).

:func:`resolve` returns the object or raises :class:`NameRefused` with the reason in words; the
callers (``safe_yaml.check_lazy_targets``, ``safe_config.check_mmengine_types``) turn that into
an :class:`~safepredict.errors.UntrustedCodeError` naming the file and the key.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["DENIED_NAMES", "DENIED_PARTS", "NameRefused", "inside", "resolve", "same_object"]

# Modules inside the namespaces that load files, URLs, pickles or code, and final names that do.
DENIED_PARTS = frozenset(
    {
        "checkpoint",
        "config",
        "cpp_extension",
        "distributed",
        "env",
        "file_io",
        "fileio",
        "hub",
        "jit",
        "launch",
        "logging",
        "model_zoo",
        "multiprocessing",
        "package",
        "registry",
        "serialization",
    }
)
DENIED_NAMES = frozenset(
    {
        "download_url_to_file",
        "eval",
        "exec",
        "get_object_from_string",
        "import_module",
        "instantiate",
        "launch",
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
MAX_NAME_CHARS = 256


class NameRefused(Exception):
    """A dotted name that :func:`resolve` does not turn into an object; ``str()`` says why."""


def inside(module: str, namespaces: tuple[str, ...]) -> bool:
    """Whether dotted ``module`` is one of ``namespaces`` (``"torch."``) or below one."""
    return any(module == ns.rstrip(".") or module.startswith(ns) for ns in namespaces)


def _check_parts(name: str, parts: list[str]) -> None:
    for part in parts:
        if not part.isidentifier() or part.startswith("_"):
            raise NameRefused(f"{name!r} has the part {part[:40]!r}, not a public Python name")
    denied = DENIED_PARTS.intersection(parts[1:-1])
    if denied:
        raise NameRefused(f"{name!r} lies in {sorted(denied)[0]!r}, which loads files, URLs or code")
    if parts[-1] in DENIED_NAMES:
        raise NameRefused(f"{name!r} is {parts[-1]!r}, a loader of files, URLs or code")


def _module(path: str) -> types.ModuleType:
    try:
        module = importlib.import_module(path)
    except Exception as exc:  # noqa: BLE001 - not a module (torch.os), or one that fails to import
        raise NameRefused(f"{path!r} is not an importable module ({type(exc).__name__})") from None
    if not isinstance(module, types.ModuleType) or module.__name__ != path:
        raise NameRefused(f"{path!r} is an alias of the module {getattr(module, '__name__', '?')!r}")
    if sys.modules.get(path) is not module:
        raise NameRefused(f"{path!r} is not the module imported under that name")
    return module


def _attribute(module: types.ModuleType, attribute: str) -> Any:
    obj = vars(module).get(attribute)
    if obj is None:
        raise NameRefused(f"the module {module.__name__} has no attribute {attribute!r}")
    return obj


def _method(owner: Any, attribute: str, name: str, namespaces: tuple[str, ...]) -> Any:
    """``owner.attribute`` where ``owner`` is a class of the namespace and the attribute a function
    (plain, static or class method) one of its classes defines: no instance, no data, no module."""
    if not isinstance(owner, type) or not inside(getattr(owner, "__module__", ""), namespaces):
        raise NameRefused(f"{name!r}: {name.rpartition('.')[0]!r} is not a class of {', '.join(namespaces)}")
    for klass in owner.__mro__:
        raw = vars(klass).get(attribute)
        if raw is None:
            continue
        function = raw.__func__ if isinstance(raw, staticmethod | classmethod) else raw
        if not isinstance(function, types.FunctionType):
            break
        if not inside(getattr(klass, "__module__", ""), namespaces):
            break
        return getattr(owner, attribute)
    raise NameRefused(f"{name!r} is not a function defined by the class {owner.__qualname__}")


def same_object(a: Any, b: Any) -> bool:
    """``a is b``, or the same method bound to the same class (``C.m`` of a classmethod makes a new one)."""
    if a is b:
        return True
    return bool(
        isinstance(a, types.MethodType)
        and isinstance(b, types.MethodType)
        and a.__func__ is b.__func__
        and a.__self__ is b.__self__
    )


def resolve(name: str, namespaces: tuple[str, ...]) -> Any:
    """The object dotted ``name`` names, found by import and one attribute, inside ``namespaces``.

    Importing ``a.b.c`` runs that installed module's own code (as the framework's loader would),
    never the config's. Raises :class:`NameRefused` for anything else.
    """
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"{str(name)[:60]!r}... is not a dotted name of at most {MAX_NAME_CHARS} characters")
    module_path, dot, attribute = name.rpartition(".")
    if not dot or not inside(module_path, namespaces):
        raise NameRefused(f"{name!r} is not under {', '.join(namespaces)}")
    _check_parts(name, name.split("."))
    try:
        obj = _attribute(_module(module_path), attribute)
    except NameRefused as first:
        owner_path, dot, owner_name = module_path.rpartition(".")
        if not dot or not inside(owner_path, namespaces):
            raise
        try:
            owner = _attribute(_module(owner_path), owner_name)
        except NameRefused:
            raise first from None
        if not isinstance(owner, type):  # torch.os: a module reached by attribute, not a class
            raise first from None
        obj = _method(owner, attribute, name, namespaces)
    if isinstance(obj, types.ModuleType):
        raise NameRefused(f"{name!r} is a module, not a callable")
    if not callable(obj):
        raise NameRefused(f"{name!r} is a {type(obj).__name__}, not a callable")
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str) or not inside(home, namespaces):
        raise NameRefused(f"{name!r} is defined in {home!r}, outside {', '.join(namespaces)} (a re-export)")
    own = getattr(obj, "__name__", None)
    # Where it was defined may be private (torchvision.transforms.v2._geometry); a loader it may not be.
    home_parts = home.split(".")
    denied = DENIED_PARTS.intersection(home_parts[1:])
    if denied or (isinstance(own, str) and own in DENIED_NAMES):
        what = sorted(denied)[0] if denied else own
        raise NameRefused(f"{name!r} is defined as {home}.{own}, in {what!r}, which loads files, URLs or code")
    return obj
