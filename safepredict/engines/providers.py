"""Which onnxruntime execution provider an exported model runs on: one rule for the engine and the lock."""

from __future__ import annotations

from collections.abc import Iterable

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def preferred_provider(available: Iterable[str]) -> str:
    """The best provider an onnxruntime build offers: CUDA where it has it (onnxruntime-gpu), else the CPU.

    What the environment can run an exported model on, as the lock and the export metadata record it;
    the provider a session runs on is what ``OnnxEngine`` was asked for (the CPU by default).
    """
    return CUDA if CUDA in set(available) else CPU
