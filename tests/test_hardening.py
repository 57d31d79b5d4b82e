"""Bad input gets a clear, typed error saying what to do; a storm of warnings stays readable.

Each case here used to end in a framework's or numpy's own exception, or in silence.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from safepredict import InputError, SafePredictor
from safepredict import images as images_module
from safepredict._logging import configure_rate_limit, warn, warning_counts


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header announces ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_a_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a directory") as info:
        images_module.as_path(tmp_path)
    assert "safepredict predict" in info.value.fix


def test_a_channel_first_array_is_named_with_the_fix():
    chw = np.zeros((3, 120, 160), np.uint8)
    with pytest.raises(InputError, match="channel-first") as info:
        images_module.from_array(chw, "RGB")
    assert info.value.fix == "transpose it: arr.transpose(1, 2, 0)"
    assert images_module.from_array(chw.transpose(1, 2, 0), "RGB").array.shape == (120, 160, 3)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = _png_header_only(tmp_path / "bomb.png", 30_000, 30_000)
    assert bomb.stat().st_size < 100
    with pytest.raises(InputError, match="decompression bomb") as info:
        images_module.as_path(bomb)
    assert info.value.found == (30_000, 30_000)
    assert "set_max_image_pixels" in info.value.fix


def test_the_pixel_limit_is_settable(d2_fixture):
    image = d2_fixture.dataset.val_images[0]
    from PIL import Image

    with Image.open(image) as im:
        pixels = im.size[0] * im.size[1]
    previous = images_module.set_max_image_pixels(pixels - 1)
    try:
        with pytest.raises(InputError, match="more than the limit"):
            images_module.as_path(image)
        images_module.set_max_image_pixels(0)  # no limit
        assert images_module.as_path(image) == image
    finally:
        images_module.set_max_image_pixels(previous)
    with pytest.raises(InputError):
        images_module.set_max_image_pixels(-1)


def test_a_device_this_machine_lacks_is_a_typed_error(d2_fixture):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU there is (cuda:0 here)
    with pytest.raises(InputError, match="not available here") as info:
        SafePredictor.from_checkpoint(d2_fixture.checkpoint, device=missing, monitor=False)
    assert "device='cpu'" in info.value.fix
    with pytest.raises(InputError, match="invalid device"):
        SafePredictor.from_checkpoint(d2_fixture.checkpoint, device="gpu", monitor=False)


def test_class_names_of_the_wrong_length(d2_fixture):
    with pytest.raises(InputError, match="2 names but the model was trained with 3 classes"):
        SafePredictor.from_checkpoint(d2_fixture.checkpoint, class_names=["a", "b"], monitor=False)


def test_an_override_with_no_settable_key_is_refused_not_ignored(d2_fixture):
    """Detectron2's padding comes from the backbone's code: there is no key to set."""
    for field in ("pad_divisor", "pad_value"):
        with pytest.raises(InputError, match=f"cannot override '{field}': no config key sets it"):
            SafePredictor.from_checkpoint(d2_fixture.checkpoint, overrides={field: 64}, monitor=False)


def test_a_warning_storm_is_rate_limited_and_counted(caplog):
    caplog.set_level(logging.WARNING, logger="safepredict")
    configure_rate_limit(burst=20, period=3600)
    try:
        with pytest.warns(Warning):
            for i in range(5000):
                warn(f"bad input {i}", code="test.storm")
    finally:
        configure_rate_limit()
    records = [r for r in caplog.records if getattr(r, "safepredict_code", None) == "test.storm"]
    assert len(records) == 20
    assert warning_counts()["test.storm"] == {"emitted": 20, "suppressed": 4980}


def test_the_next_record_after_a_storm_says_how_many_were_suppressed(caplog):
    caplog.set_level(logging.WARNING, logger="safepredict")
    configure_rate_limit(burst=2, period=0.05)
    try:
        with pytest.warns(Warning):
            for i in range(10):
                warn(f"bad input {i}", code="test.burst")
            import time

            time.sleep(0.06)
            warn("after the storm", code="test.burst")
    finally:
        configure_rate_limit()
    last = [r for r in caplog.records if getattr(r, "safepredict_code", None) == "test.burst"][-1]
    assert "8 more warning(s) of this kind were suppressed" in last.getMessage()
    assert last.safepredict_suppressed == 8
