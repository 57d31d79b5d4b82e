"""Every accepted input turned into one uint8 ``H x W x 3`` array of known colour order.

File paths are *not* decoded here: each framework adapter decodes them exactly as that
framework's evaluation path does (Detectron2 ``read_image`` through PIL with EXIF; MMDetection
``LoadImageFromFile``), because the decoder is part of the training contract.
"""

from __future__ import annotations

import os
import warnings
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


# Decoded-size limit for image files (decompression bombs): a 100x100 KB PNG can decode to
# gigabytes. Checked from the file's header before anything is decoded. PIL's own default
# (Image.MAX_IMAGE_PIXELS, 89.5 MP) only warns and errors at twice that; this limit refuses.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970  # PIL's error threshold: 2 x MAX_IMAGE_PIXELS
_max_pixels = int(os.environ.get("SAFEPREDICT_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS))


def max_image_pixels() -> int:
    """The decoded-size limit (width x height) for image files; 0 means no limit."""
    return _max_pixels


def set_max_image_pixels(pixels: int) -> int:
    """Set the decoded-size limit for image files (0: none); return the previous one.

    Also settable with the environment variable ``SAFEPREDICT_MAX_IMAGE_PIXELS``.
    """
    global _max_pixels
    if not isinstance(pixels, int) or pixels < 0:
        raise InputError(f"max image pixels must be an int >= 0, got {pixels!r}", found=pixels)
    previous, _max_pixels = _max_pixels, pixels
    return previous


def check_decoded_size(path: Path) -> None:
    """Refuse an image file whose header announces more pixels than :func:`max_image_pixels`."""
    limit = _max_pixels
    if not limit:
        return
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow is a dependency of both frameworks
        return
    try:
        with warnings.catch_warnings():
            # PIL warns (DecompressionBombWarning) or raises past its own limit; we decide here.
            warnings.simplefilter("ignore")
            saved, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
            try:
                with PILImage.open(path) as im:  # reads the header only
                    width, height = im.size
            finally:
                PILImage.MAX_IMAGE_PIXELS = saved
    except (OSError, ValueError, SyntaxError):
        return  # not an image PIL knows: the framework's decoder says what is wrong with it
    if width * height > limit:
        raise InputError(
            f"image {path} would decode to {width} x {height} = {width * height:,} pixels, more than the "
            f"limit of {limit:,} (a decompression bomb, or an image far larger than any detector input)",
            expected=f"<= {limit:,} pixels",
            found=(width, height),
            source=str(path),
            fix="resize the image first, or raise the limit with safepredict.images.set_max_image_pixels(n) "
            "or SAFEPREDICT_MAX_IMAGE_PIXELS=n",
        )


def as_path(image: Any) -> Path | None:
    """The path if ``image`` is a path-like, else None; a missing file or a folder is an InputError."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.is_dir():
            raise InputError(
                f"{path} is a directory, not an image file",
                found=str(path),
                fix="pass the image files in it (sorted(Path(folder).glob('*.jpg'))), or use "
                "`safepredict predict CHECKPOINT FOLDER` for a whole folder",
            )
        if not path.is_file():
            raise InputError(f"image file not found: {path}", found=str(path), fix="check the path")
        check_decoded_size(path)
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
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        raise InputError(
            f"image array is channel-first {arr.shape} (C, H, W); safepredict takes (H, W, C) as cv2 and PIL give",
            expected="(H, W, 3)",
            found=arr.shape,
            fix="transpose it: arr.transpose(1, 2, 0)",
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
