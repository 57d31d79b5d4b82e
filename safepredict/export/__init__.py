"""Exported models that keep the training contract (docs/deploying.md).

``export(predictor, "model.onnx")`` writes the graph with the contract in its metadata;
``verify_export`` compares an ONNX model, stage by stage, with the framework's own evaluation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export", "verify_export"]


def export(predictor: Any, path: Any, **kwargs: Any) -> Any:
    """See :func:`safepredict.export.writer.export`."""
    from safepredict.export.writer import export as _export

    return _export(predictor, path, **kwargs)


def verify_export(*args: Any, **kwargs: Any) -> Any:
    """See :func:`safepredict.export.verify.verify_export`."""
    from safepredict.export.verify import verify_export as _verify

    return _verify(*args, **kwargs)
