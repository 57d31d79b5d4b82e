"""Training configs already read in this process, remembered by the sha256 of their bytes.

Reading a Detectron2 training ``config.yaml`` safely costs a child process under the guard's
limits (:mod:`safepredict.frameworks.guard`), the YAML parse and its checks, and fvcore's merge
into ``get_cfg()``: tens of milliseconds, at every construction of a predictor. What that read
gives depends only on the file's bytes, so the merged config is kept here, keyed by the sha256
of those bytes and by whether the read was trusted, and a later read of the same bytes gets a
clone of it without reading the file again. Different bytes are a different key: they are read,
and checked, as if nothing had been cached. A config with ``_BASE_`` depends on other files too
and is never cached, nor is anything that is not a regular file of at most :data:`MAX_BYTES`.

Only in this process, in memory: nothing is written to disk, where another user could put a
config safepredict would then believe it had checked.
"""

from __future__ import annotations

import hashlib
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "Key", "clear", "get", "key_of", "put"]

MAX_BYTES = 4 << 20  # a training config.yaml is a few kB; larger files are read every time
MAX_ENTRIES = 32

Key = tuple[str, bool]  # (sha256 of the file's bytes, trusted read)

_lock = threading.Lock()
_entries: OrderedDict[Key, Any] = OrderedDict()


def key_of(path: str | Path, trust: bool) -> Key | None:
    """The cache key of a config file's current bytes, or None when it is not to be cached."""
    try:
        info = Path(path).stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None  # a FIFO or a device is never opened here; the guarded reader deals with it
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_BYTES or b"_BASE_" in data:
        return None
    return hashlib.sha256(data).hexdigest(), trust


def get(key: Key | None) -> Any:
    """A clone of the config read for ``key``, or None (callers may change what they get)."""
    if key is None:
        return None
    with _lock:
        cfg = _entries.get(key)
        if cfg is None:
            return None
        _entries.move_to_end(key)
    return cfg.clone()


def put(key: Key | None, cfg: Any, path: str | Path) -> None:
    """Remember ``cfg``, read from ``path`` whose bytes had ``key`` before the read.

    Stored only if the file still has those bytes: a file rewritten while it was read is not
    cached under the key of its old content.
    """
    if key is None or key_of(path, key[1]) != key:
        return
    with _lock:
        _entries[key] = cfg.clone()
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)


def clear() -> None:
    """Forget every config (tests; a process that wants every read fresh)."""
    with _lock:
        _entries.clear()
