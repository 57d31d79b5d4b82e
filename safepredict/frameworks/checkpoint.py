"""Read a checkpoint file safely, and tell which framework wrote it (or a config).

Every part of safepredict loads checkpoints through :func:`load_checkpoint`: ``torch.load`` on
the CPU with ``weights_only=True`` and a short allow-list of the globals that mmengine's
``Runner`` writes into its checkpoints (numpy arrays and scalars, ``HistoryBuffer`` in
``message_hub``). Since torch 2.6 ``weights_only=True`` is the default and mmdet's own
``init_detector`` fails on those globals; loading with ``weights_only=False`` instead would run
any code a checkpoint carries, which we never do.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safepredict.errors import ConfigError, FrameworkNotInstalled, InputError
from safepredict.frameworks.base import INSTALL_HINTS

__all__ = ["FRAMEWORKS", "detect_framework", "framework_of_config", "load_checkpoint", "safe_globals"]

FRAMEWORKS = ("detectron2", "mmdet")

INSTALL_HINT = INSTALL_HINTS


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "reading a checkpoint needs torch, which is not importable here",
            expected="torch",
            found=str(exc),
            fix="pip install torch (the version the model was trained with)",
        ) from exc
    return torch


def safe_globals(mmengine: bool = True) -> list[Any]:
    """The globals allowed besides torch's own when unpickling a checkpoint.

    numpy values (``message_hub`` holds numpy scalars and arrays; numpy 1.x pickles name them
    ``numpy.core.*``, numpy 2 ``numpy._core.*``) and, with ``mmengine``, mmengine's
    ``HistoryBuffer`` when mmengine is importable (importing it costs ~0.2 s: a checkpoint that
    names no mmengine global does not pay it, see :func:`load_checkpoint`).
    """
    import builtins

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    # numpy 2 pickles some scalars through getattr. Allowing it is safe here: the weights-only
    # unpickler calls (REDUCE) only allow-listed callables, so an attribute fetched with getattr
    # can be stored but never called.
    allowed: list[Any] = [np.dtype, np.ndarray, builtins.getattr]
    for name in ("_reconstruct", "scalar"):
        func = getattr(core.multiarray, name)
        allowed.append(func)
        allowed.append((func, f"numpy.core.multiarray.{name}"))
        allowed.append((func, f"numpy._core.multiarray.{name}"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed.extend(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))
    if not mmengine:
        return allowed
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:
        pass
    else:
        allowed.append(HistoryBuffer)
    return allowed


def _names_mmengine(handle: Any) -> bool:
    """Whether the pickle of an open torch zip checkpoint mentions mmengine (True when unsure).

    Only the pickle record is read (tens of KB; the tensors are separate records), from the same
    open file ``torch.load`` then reads: the checkpoint is still opened once.
    """
    try:
        with zipfile.ZipFile(handle) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            return name is None or b"mmengine" in archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError):  # the legacy (non-zip) format: allow everything
        return True
    finally:
        handle.seek(0)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The content of checkpoint ``path`` (tensors on the CPU), loaded with ``weights_only=True``.

    Raises :class:`~safepredict.errors.InputError` for a missing, corrupt or unreadable file
    (and for a pickle that needs globals outside the allow-list, naming them), and
    :class:`~safepredict.errors.FrameworkNotInstalled` when the checkpoint holds objects of a
    framework that is not installed here.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file",
            source=str(path),
            fix="pass the path of the .pth file training wrote (Detectron2: OUTPUT_DIR/model_final.pth; "
            "mmengine: work_dir/epoch_N.pth or iter_N.pth)",
        )
    torch = _import_torch()
    pickle_error = getattr(torch.serialization, "pickle", None)
    try:
        with open(path, "rb") as handle, torch.serialization.safe_globals(safe_globals(_names_mmengine(handle))):
            data = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "mmengine" in text and "Unsupported global" in text:
            raise FrameworkNotInstalled(
                f"checkpoint {path} was written by mmengine, which is not importable here",
                expected="mmengine",
                found=text.splitlines()[0],
                source=str(path),
                fix=INSTALL_HINT["mmdet"],
            ) from exc
        if "Unsupported global" in text or "weights_only" in text:
            names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text)))
            raise InputError(
                f"checkpoint {path} holds objects outside safepredict's allow-list ({', '.join(names) or text[:200]}); "
                "safepredict loads checkpoints with weights_only=True and never runs code from a checkpoint",
                found=names,
                source=str(path),
                fix="re-save the checkpoint with only tensors and plain values (torch.save({'model': state_dict}))",
            ) from exc
        kind = type(exc).__name__
        if pickle_error is not None and isinstance(exc, getattr(pickle_error, "UnpicklingError", ())):
            kind = "unpickling error"
        raise InputError(
            f"checkpoint {path} could not be read ({kind}: {text.splitlines()[0] if text else ''}); "
            "the file is corrupt, truncated or not a torch checkpoint",
            found=text,
            source=str(path),
            fix="check the file (its size, a finished download/copy) or pass the right checkpoint",
        ) from exc
    if not isinstance(data, dict):
        raise InputError(
            f"checkpoint {path} holds a {type(data).__name__}, not a dict of weights",
            found=type(data).__name__,
            source=str(path),
            fix="pass a checkpoint saved by Detectron2's DetectionCheckpointer or mmengine's Runner",
        )
    return data


def _state_dict(data: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("state_dict", "model"):
        value = data.get(key)
        if isinstance(value, Mapping):
            return value
    return data


_D2_PREFIXES = ("backbone.bottom_up.", "proposal_generator.", "roi_heads.", "backbone.res", "backbone.stem.")
_MM_PREFIXES = ("neck.", "rpn_head.", "roi_head.", "bbox_head.", "backbone.layer", "backbone.conv1", "backbone.stem")


def detect_framework(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> str:
    """Which framework wrote checkpoint content ``data``: ``"detectron2"`` or ``"mmdet"``.

    mmengine checkpoints hold ``meta`` (with the config text) and ``state_dict`` with keys like
    ``backbone.layer1...``/``roi_head...``; Detectron2 checkpoints hold ``model`` with keys like
    ``backbone.bottom_up...``/``roi_heads...`` and ``iteration``.
    """
    keys = [str(k) for k in _state_dict(data)]
    d2 = sum(k.startswith(_D2_PREFIXES) for k in keys) + ("iteration" in data) + ("model" in data) * 2
    mm = sum(k.startswith(_MM_PREFIXES) for k in keys) + ("meta" in data) * 2 + ("state_dict" in data) * 2
    mm += "message_hub" in data
    if isinstance(data.get("meta"), Mapping) and "cfg" in data["meta"]:
        mm += 10
    if d2 == mm == 0 or d2 == mm:
        raise InputError(
            f"cannot tell which framework wrote checkpoint {path} (top-level keys {sorted(data)[:8]}, "
            f"weight keys such as {keys[:3]})",
            found=sorted(data),
            source=str(path),
            fix="pass the checkpoint as Detectron2's DetectionCheckpointer or mmengine's Runner saved it",
        )
    return "detectron2" if d2 > mm else "mmdet"


def framework_of_config(config: Any) -> str:
    """Which framework a config belongs to (a path or a config object), without executing it."""
    module = type(config).__module__
    name = type(config).__name__
    if name == "CfgNode" or module.startswith(("yacs", "detectron2", "omegaconf")):
        return "detectron2"
    if module.startswith("mmengine") or name in ("Config", "ConfigDict"):
        return "mmdet"
    if isinstance(config, str | Path):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config {path} does not exist", source=str(path), fix="pass an existing config file")
        from safepredict.frameworks.safe_config import read_config_bytes

        # A regular file, size checked before it is read: a stranger's "config" may be /dev/zero.
        text = read_config_bytes(path, str(path), 2_000_000).decode("utf-8", "replace")
        if path.suffix == ".py":
            return _framework_of_python(text, path)
        if path.suffix in (".yaml", ".yml"):
            if re.search(r"^(MODEL|INPUT|_BASE_|SOLVER|DATASETS)\s*:", text, re.M) or "_target_" in text:
                return "detectron2"
            return "mmdet"
        if path.suffix == ".json":
            return "mmdet"
    raise ConfigError(
        f"cannot tell which framework config {config!r} belongs to",
        found=f"{module}.{name}",
        fix="pass a Detectron2 config.yaml / LazyConfig or an mmengine config file",
    )


_LAZY_CALLS = frozenset({"L", "LazyCall", "get_config"})
_MM_PACKAGES = ("mmengine", "mmdet", "mmcv", "mmpretrain", "mmyolo")


def _framework_of_python(text: str, path: Path) -> str:
    """Tell an mmengine config from a Detectron2 LazyConfig by what its code does, never running it.

    Parsed with ``ast`` (comments and strings do not count: many mmdet configs say "detectron2"
    in a comment). mmengine: an import from an mm* package (pure-Python configs with
    ``read_base``), a ``_base_`` assignment, or ``dict(type=...)`` calls. LazyConfig: imports from
    ``detectron2``, ``L(...)``/``LazyCall``/``get_config`` calls, or inheritance by relative import.
    """
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(
            f"config {path} is not valid Python (line {exc.lineno}: {exc.msg})",
            source=str(path),
            fix="pass the config file the model was trained with",
        ) from exc
    absolute: set[str] = set()
    relative = False
    calls: set[str] = set()
    typed_dicts = base = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                relative = True
            if node.module:
                absolute.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.add(node.func.id)
            if node.func.id == "dict" and any(k.arg == "type" for k in node.keywords):
                typed_dicts = True
        elif isinstance(node, ast.Assign):
            base = base or any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets)
    if absolute & set(_MM_PACKAGES) or base:
        return "mmdet"
    if "detectron2" in absolute or calls & _LAZY_CALLS:
        return "detectron2"
    if typed_dicts:
        return "mmdet"
    if relative:  # a LazyConfig that only inherits (``from .retinanet import model, ...``)
        return "detectron2"
    raise ConfigError(
        f"cannot tell which framework config {path} belongs to: it has no _base_, no dict(type=...) "
        "(mmengine) and no detectron2 import or L(...) call (LazyConfig)",
        source=str(path),
        fix="pass a Detectron2 config.yaml / LazyConfig or an mmengine config file",
    )
