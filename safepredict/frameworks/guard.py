"""A hard budget on every untrusted read: the read runs in a forked child under rlimits.

The safe readers (:mod:`safe_config`, :mod:`safe_yaml`) count the cost of what they do and stop
a hostile text with a typed error long before it hurts. This module is the guard that does not
depend on that accounting being complete: :func:`run` forks, the child caps its own address
space (``RLIMIT_AS``: what it had at the fork plus the memory ceiling) and CPU time
(``RLIMIT_CPU``), does the read, and sends the plain-data result back through a pipe as a
pickle of built-in types only (the parent unpickles with an allow-list: ``set``, ``frozenset``,
``complex``, ``slice``, ``Ellipsis``, Detectron2's ``ShapeSpec``). The parent waits at most the
wall deadline, then kills it. Whatever ends the child (a limit, ``MemoryError``, a recursion, a
crash of a C parser) comes back as a :class:`~safepredict.errors.ConfigError` that names the file
and the limit; a :class:`~safepredict.errors.SafePredictError` the reader raised comes back as it
was raised.

Forking a process that has torch imported costs about 10 ms (measured: docs/security.md). A
caller that already holds the result for these exact bytes (a cache keyed by the file's sha256)
skips the read, and with it the guard. Where ``os.fork`` or :mod:`resource` does not exist
(Windows), the read runs in-process under the readers' own accounting only.

Limits: :func:`limits` (``SAFEPREDICT_READ_MEMORY_MB``, ``SAFEPREDICT_READ_CPU_S``,
``SAFEPREDICT_READ_WALL_S``), and :func:`limited` to change them for a block (tests).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import pickle
import reprlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs

from safepredict import errors
from safepredict.errors import ConfigError, SafePredictError

__all__ = ["Limits", "available", "limited", "limits", "run"]

T = TypeVar("T")

MAX_RESULT_BYTES = 256 * 1024 * 1024
_ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("builtins", "Ellipsis"),
        ("detectron2.layers.shape_spec", "ShapeSpec"),
    }
)


@attrs.frozen
class Limits:
    """What one untrusted read may use: memory above the process at the fork, CPU and wall time."""

    memory_mb: int = 1024
    cpu_s: int = 20
    wall_s: float = 30.0

    def describe(self) -> str:
        return f"{self.memory_mb} MiB of memory, {self.cpu_s} s of CPU, {self.wall_s:g} s of wall time"


def _env_int(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


_override: Limits | None = None
_in_child = False


def limits() -> Limits:
    """The limits of an untrusted read now: :func:`limited`'s, else the environment's, else the defaults."""
    if _override is not None:
        return _override
    default = Limits()
    return Limits(
        memory_mb=int(_env_int("SAFEPREDICT_READ_MEMORY_MB", default.memory_mb)),
        cpu_s=max(1, int(_env_int("SAFEPREDICT_READ_CPU_S", default.cpu_s))),
        wall_s=_env_int("SAFEPREDICT_READ_WALL_S", default.wall_s),
    )


@contextlib.contextmanager
def limited(memory_mb: int | None = None, cpu_s: int | None = None, wall_s: float | None = None) -> Iterator[Limits]:
    """Run the block's untrusted reads under other limits (process-wide while it lasts)."""
    global _override
    before = _override
    current = limits()
    _override = Limits(
        memory_mb=memory_mb if memory_mb is not None else current.memory_mb,
        cpu_s=cpu_s if cpu_s is not None else current.cpu_s,
        wall_s=wall_s if wall_s is not None else current.wall_s,
    )
    try:
        yield _override
    finally:
        _override = before


def available() -> bool:
    """Whether reads are guarded by a child process here (POSIX with fork and rlimits)."""
    try:
        import resource  # noqa: F401 - only whether it exists
    except ImportError:
        return False
    return hasattr(os, "fork")


# --------------------------------------------------------------------------- the child


def _address_space() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _apply(lim: Limits) -> None:
    import resource

    def lower(kind: int, soft: int, hard: int | None = None) -> None:
        _, old_hard = resource.getrlimit(kind)
        new_hard = hard if hard is not None else old_hard
        if old_hard != resource.RLIM_INFINITY:
            soft = min(soft, old_hard)
            new_hard = min(new_hard, old_hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(kind, (soft, new_hard))

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    lower(resource.RLIMIT_CPU, lim.cpu_s, lim.cpu_s + 1)
    current = _address_space()
    if current is not None:  # Linux: the ceiling counts from what the fork inherited
        lower(resource.RLIMIT_AS, current + lim.memory_mb * 1024 * 1024)
    else:
        lower(resource.RLIMIT_DATA, lim.memory_mb * 1024 * 1024)


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str | bytes | int | float | bool | type(None)):
        return not isinstance(value, str | bytes) or len(value) < 100_000
    if depth > 4:
        return False
    if isinstance(value, list | tuple):
        return len(value) < 1000 and all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) < 1000 and all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _error_state(exc: SafePredictError) -> tuple[str, str, dict[str, Any]]:
    fields = {}
    for key in ("expected", "found", "source", "fix", "details"):
        value = getattr(exc, key, None)
        fields[key] = value if _plain(value) else reprlib.repr(value)
    return type(exc).__name__, exc.message, fields


class _Collect(logging.Handler):
    """The child's log records of ``safepredict``, sent to the parent, which logs them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.records.append((record.name, record.levelno, record.getMessage()[:10_000]))


def _child(write: int, fn: Callable[..., Any], args: tuple[Any, ...], lim: Limits) -> None:
    global _in_child
    _in_child = True
    code = 0
    try:
        # A collection would walk (and so copy, page by page) every object inherited from the parent;
        # the child lives for one read, under its memory ceiling.
        gc.disable()
        _apply(lim)
        collect = _Collect()
        logger = logging.getLogger("safepredict")
        logger.handlers, logger.propagate = [collect], False
        outcome: tuple[str, Any]
        try:
            outcome = ("ok", fn(*args))
        except SafePredictError as exc:
            outcome = ("error", _error_state(exc))
        except MemoryError:
            outcome = ("limit", "memory")
        except RecursionError:
            outcome = ("limit", "recursion")
        except BaseException as exc:  # noqa: BLE001 - anything else ends typed in the parent
            outcome = ("crash", f"{type(exc).__name__}: {reprlib.repr(exc.args)}")
        outcome = (*outcome, collect.records[:1000])
        try:
            data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except RecursionError:
            data = pickle.dumps(("limit", "recursion", []))
        if len(data) > MAX_RESULT_BYTES:
            data = pickle.dumps(("limit", "result", []))
        view = memoryview(data)
        while view:
            view = view[os.write(write, view[: 1 << 20]) :]
        os.close(write)  # the parent's end of the pipe now, before the exit tears the address space down
    except MemoryError:
        code = 3
    except BaseException:  # noqa: BLE001 - the parent reads the exit code
        code = 4
    finally:
        os._exit(code)


# --------------------------------------------------------------------------- the parent


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not plain config data")
        return super().find_class(module, name)


def _limit_error(source: str, lim: Limits, what: str, detail: str = "") -> ConfigError:
    allowed = f"safepredict's limits on reading an untrusted config ({lim.describe()})"
    messages = {
        "memory": f"needs more than the {lim.memory_mb} MiB of memory",
        "cpu": f"needs more than the {lim.cpu_s} s of CPU time",
        "wall": f"took longer than the {lim.wall_s:g} s of wall time",
        "recursion": "is nested too deeply to read",
        "result": f"reads into more than {MAX_RESULT_BYTES >> 20} MiB of data",
        "crash": f"crashed the reader ({detail})",
    }
    return ConfigError(
        f"config {source} {messages.get(what, what)} within {allowed}; a real config needs a fraction "
        "of that, so this one is refused",
        expected=lim.describe(),
        found=what,
        source=source,
        fix="if the file is yours and this large on purpose, load it with trust=True, or raise the limit "
        "(SAFEPREDICT_READ_MEMORY_MB, SAFEPREDICT_READ_CPU_S, SAFEPREDICT_READ_WALL_S)",
        details={"limit": what, "limits": attrs.asdict(lim)},
    )


def _rebuild(state: tuple[str, str, dict[str, Any]], source: str) -> SafePredictError:
    name, message, fields = state
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SafePredictError)):
        return ConfigError(message, source=source)
    return cls(message, **fields)


def _complete(data: bytes) -> bool:
    return data[:1] == b"\x80" and data[-1:] == b"."  # a whole pickle (protocol 2+): the read is done


def _reap(pid: int, data: bytes) -> int:
    """The child's exit status; 0 at once if its result is whole and it is still exiting.

    Tearing down the address space of a child forked from a process with torch in it takes
    ~20 ms; with the result in hand nothing depends on it, so a daemon thread reaps the child.
    """
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return status
    if not _complete(data):
        return os.waitpid(pid, 0)[1]
    import threading

    threading.Thread(target=os.waitpid, args=(pid, 0), name="safepredict-guard-reaper", daemon=True).start()
    return 0


def run(fn: Callable[..., T], *args: Any, source: str) -> T:
    """``fn(*args)`` in a child under :func:`limits`; its result, or a typed error naming ``source``.

    ``fn``'s result must be plain data (built-in containers and scalars). Nested calls (a read
    inside a guarded read) run directly in the child.
    """
    if _in_child or not available():
        return fn(*args)
    import select

    lim = limits()
    for stream in (sys.stdout, sys.stderr):  # the child must not write the parent's pending output again
        with contextlib.suppress(Exception):
            stream.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, measured by its result
        os.close(read)
        _child(write, fn, args, lim)
    os.close(write)
    deadline = time.monotonic() + lim.wall_s
    buffer = io.BytesIO()
    status: int | None = None
    problem: str | None = None
    try:
        poller = select.poll()
        poller.register(read, select.POLLIN | select.POLLHUP)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = "wall"
                break
            if not poller.poll(remaining * 1000):
                continue
            chunk = os.read(read, 1 << 20)
            if not chunk:
                break
            buffer.write(chunk)
            if buffer.tell() > MAX_RESULT_BYTES + 1024:
                problem = "result"
                break
        if problem is None:  # the end of the pipe: the child has written all it will
            status = _reap(pid, buffer.getvalue())
    finally:
        os.close(read)
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if problem is not None:
        raise _limit_error(source, lim, problem)
    assert status is not None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise _limit_error(source, lim, "cpu")
        raise _limit_error(source, lim, "crash", f"signal {sig}")
    code = os.WEXITSTATUS(status)
    data = buffer.getvalue()
    if code == 3 or (code != 0 and not data):
        raise _limit_error(source, lim, "memory") if code == 3 else _limit_error(source, lim, "crash", f"exit {code}")
    try:
        kind, payload, records = _Unpickler(io.BytesIO(data)).load()
    except Exception as exc:  # noqa: BLE001 - a result that is not plain data
        raise ConfigError(f"config {source}: the reader's result is not plain data ({exc})", source=source) from None
    for name, level, message in records if isinstance(records, list) else []:
        logging.getLogger(str(name)).log(int(level), "%s", message)
    if kind == "ok":
        return payload
    if kind == "error":
        raise _rebuild(payload, source)
    if kind == "limit":
        raise _limit_error(source, lim, payload)
    raise ConfigError(
        f"config {source} could not be read: the reader failed with {payload}",
        source=source,
        fix="correct the config (it must load with the framework's own loader, too)",
    )
