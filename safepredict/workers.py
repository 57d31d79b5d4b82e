"""Many images on every core: worker processes with their own model, decoding overlapped, results in order.

The model is more than 99 % of each image's time, and one process with several intra-op threads
uses the cores worse than several single-threaded processes (measured on 2 cores, see
docs/benchmarks.md). :func:`run_in_workers` therefore starts ``workers`` processes, each with
``threads`` intra-op threads, and hands them chunks of images in order. On Linux they are forked
from the caller, whose model they share copy-on-write (no import, no model build, no second
checkpoint read: the pattern of torch's own DataLoader workers, which also run single-threaded);
elsewhere, or with a GPU, they are spawned and each builds the same SafePredictor from the same
arguments. Inside a worker, the next image is decoded on a second thread while the model runs
the current one. Results come back in input order and equal the serial path's (same code, same
thread count per forward); the caller's monitor is fed every image in the parent process.

On a GPU the plan is one model and a decode pool (threads), since a second model would only
compete for the same device.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections
from safepredict.errors import InputError

# Chunks submitted ahead per worker process: enough that no worker waits for the next one.
IN_FLIGHT = 2

__all__ = ["WorkerPlan", "default_plan", "run_in_workers"]


@attrs.frozen
class WorkerPlan:
    """How to spread prediction over the machine: processes, and intra-op threads in each."""

    workers: int = attrs.field(validator=attrs.validators.ge(0))
    threads: int = attrs.field(validator=attrs.validators.ge(1))

    def describe(self) -> str:
        if self.workers == 0:
            return f"in this process, {self.threads} intra-op thread(s), decoding overlapped"
        return f"{self.workers} worker process(es) x {self.threads} intra-op thread(s), decoding overlapped"


def cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_plan(device: str, images: int | None = None) -> WorkerPlan:
    """One single-threaded worker per core on the CPU; on a GPU one model (this process).

    Fewer workers than images: a worker costs a model build (seconds), so a handful of images
    stays in this process.
    """
    n = cores()
    if device.startswith(("cuda", "mps")):
        return WorkerPlan(workers=0, threads=n)
    if images is not None and images < 4 * n:
        return WorkerPlan(workers=0, threads=n)
    return WorkerPlan(workers=n, threads=1)


# ---------------------------------------------------------------------------- inside a worker

_WORKER: Any = None


def _start_forked_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # _WORKER is the parent's predictor, inherited by fork


def _start_worker(factory: Any, kwargs: dict[str, Any], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    global _WORKER
    # The parent checked the lock and owns the monitor; a worker only predicts. ``factory`` is the
    # parent predictor's class (pickled by reference), so this module never imports the predictor.
    _WORKER = factory(**{**kwargs, "monitor": False, "lock": None, "replay": False})


Result = tuple[np.ndarray | None, Detections, Detections]


def run_chunk(
    predictor: Any, items: Sequence[tuple[Any, str]], want_image: bool, *, overlap: bool = True
) -> list[Result]:
    """``(rgb or None, candidates, final)`` per item, decoding item i+1 while the model runs item i.

    ``overlap=False`` decodes inline: where the model already uses every core (intra-op threads),
    a decoding thread only makes OpenMP's spinning threads wait for it.
    """
    out: list[Result] = []
    if not items:
        return out
    if not overlap:
        for item in items:
            loaded = predictor.load(*item)
            raw = predictor._adapter.run(loaded)
            out.append((loaded.to("RGB") if want_image else None, raw.candidates, raw.final))
        return out
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="safepredict-decode") as decoder:
        pending = decoder.submit(predictor.load, *items[0])
        for i in range(len(items)):
            loaded = pending.result()
            if i + 1 < len(items):
                pending = decoder.submit(predictor.load, *items[i + 1])
            raw = predictor._adapter.run(loaded)
            out.append((loaded.to("RGB") if want_image else None, raw.candidates, raw.final))
    return out


def _worker_chunk(task: tuple[Sequence[tuple[Any, str]], bool]) -> list[Result]:
    items, want_image = task
    return run_chunk(_WORKER, items, want_image)


# ---------------------------------------------------------------------------- in the caller


def chunks(items: Iterable[tuple[Any, str]], size: int) -> Iterator[list[tuple[Any, str]]]:
    chunk: list[tuple[Any, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_in_workers(
    predictor: Any,
    kwargs: dict[str, Any],
    items: Iterable[tuple[Any, str]],
    plan: WorkerPlan,
    *,
    want_image: bool,
    chunk_size: int = 4,
) -> Iterator[Result]:
    """Results of ``items`` (``(image, color)``) from ``plan.workers`` processes, in order.

    Forked from this process where that is safe (Linux, model on the CPU), else spawned, each
    then building a predictor of ``predictor``'s class from ``kwargs``.
    """
    import multiprocessing
    import sys

    if plan.workers < 1:
        raise InputError(f"run_in_workers needs at least one worker, got {plan.workers}")
    global _WORKER
    fork = sys.platform.startswith("linux") and not str(getattr(predictor, "device", "cpu")).startswith("cuda")
    context: Any
    if fork:
        _WORKER = predictor
        context = multiprocessing.get_context("fork")
        pool_args: tuple[Any, tuple[Any, ...]] = (_start_forked_worker, (plan.threads,))
    else:
        context = multiprocessing.get_context("spawn")
        pool_args = (_start_worker, (type(predictor), kwargs, plan.threads))
    with context.Pool(plan.workers, initializer=pool_args[0], initargs=pool_args[1]) as pool:
        # At most IN_FLIGHT chunks per worker submitted ahead of the caller: a stream (a camera, a
        # generator of decoded frames) is read as fast as it is predicted, not into memory as
        # ``Pool.imap``, whose feeder thread drains its input, would.
        pending: deque[Any] = deque()
        try:
            for chunk in chunks(items, chunk_size):
                pending.append(pool.apply_async(_worker_chunk, ((chunk, want_image),)))
                if len(pending) >= IN_FLIGHT * plan.workers:
                    yield from pending.popleft().get()
            while pending:
                yield from pending.popleft().get()
        finally:
            if fork:
                _WORKER = None
