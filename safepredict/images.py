"""Every accepted input turned into one uint8 ``H x W x 3`` array of known colour order.

File paths are *not* decoded here: each framework adapter decodes them exactly as that
framework's evaluation path does (Detectron2 ``read_image`` through PIL with EXIF; MMDetection
``LoadImageFromFile``), because the decoder is part of the training contract.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np

from safepredict.errors import InputError

ColorOrder = Literal["RGB", "BGR"]
COLOR_ORDERS = ("RGB", "BGR")


@attrs.frozen(eq=False)
class LoadedImage:
    """One image in memory, with the colour order its channels are in."""

    array: np.ndarray
    color: str
    path: Path | None = None

    def to(self, color: str) -> np.ndarray:
        """The pixels in ``color`` order (a view when no conversion is needed)."""
        if color == self.color:
            return self.array
        return np.ascontiguousarray(self.array[:, :, ::-1])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])


def check_color(color: str) -> str:
    if not isinstance(color, str) or color.upper() not in COLOR_ORDERS:
        raise InputError(
            f"color must be 'RGB' or 'BGR', got {color!r}",
            expected=COLOR_ORDERS,
            found=color,
            fix="pass color='BGR' for arrays from cv2.imread, color='RGB' for arrays from PIL/imageio/matplotlib",
        )
    return color.upper()


def as_path(image: Any) -> Path | None:
    """The path if ``image`` is a path-like, else None; a missing file is an InputError."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"image file not found: {path}", found=str(path), fix="check the path")
        return path
    return None


def from_array(image: Any, color: str) -> LoadedImage:
    """Validate an in-memory image (numpy array or PIL image) and return it as uint8 HxWx3."""
    color = check_color(color)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow is a dependency of both frameworks
        PILImage = None  # type: ignore[assignment]
    if PILImage is not None and isinstance(image, PILImage.Image):
        # PIL images are RGB by definition, whatever `color` says.
        return LoadedImage(np.ascontiguousarray(np.asarray(image.convert("RGB"))), "RGB")
    if not isinstance(image, np.ndarray):
        if hasattr(image, "detach") and hasattr(image, "cpu"):
            raise InputError(
                "got a torch tensor; pass a numpy array (H, W, 3) uint8 or a file path",
                found=type(image).__name__,
                fix="use tensor.permute(1, 2, 0).cpu().numpy() for a CHW tensor",
            )
        raise InputError(
            f"unsupported image type {type(image).__name__}: pass a file path, a PIL image or a numpy array",
            found=type(image).__name__,
        )
    arr = image
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise InputError(f"image must be a non-empty (H, W) or (H, W, C) array, got shape {arr.shape}", found=arr.shape)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and float(arr.max(initial=0)) <= 1.0:
            hint = "it looks scaled to [0, 1]: use (arr * 255).round().astype(np.uint8)"
        else:
            hint = "convert with arr.astype(np.uint8) if it already holds 0-255 values"
        raise InputError(
            f"image must be uint8 (0-255) as read from disk, got {arr.dtype}; {hint}",
            expected="uint8",
            found=str(arr.dtype),
            fix=hint,
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)  # as PIL's convert("RGB") does for grayscale files
    elif channels == 4:
        raise InputError(
            "image has 4 channels (alpha); the model takes 3",
            found=arr.shape,
            fix="drop the alpha channel: arr[:, :, :3]",
        )
    elif channels != 3:
        raise InputError(f"image must have 1 or 3 channels, got {channels}", found=arr.shape)
    if min(arr.shape[:2]) < 2:
        raise InputError(f"image is too small to detect anything: {arr.shape[:2]}", found=arr.shape)
    return LoadedImage(np.ascontiguousarray(arr), color)
