"""The monitor's statistics: input statistics on known images, PSI, and the exact tests' critical values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safepredict.errors import InputError
from safepredict.monitor import stats


def _smooth_image(seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    img[:] = (150, 110, 70)
    img[20:80, 30:120] = (40, 160, 200)
    img += np.linspace(0, 40, w, dtype=np.float32)[None, :, None]
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_channel_means_and_brightness_of_a_flat_image():
    img = np.zeros((50, 60, 3), np.uint8)
    img[:] = (200, 100, 50)
    v = stats.image_statistics(img)
    assert v[stats.MEAN_R] == pytest.approx(200)
    assert v[stats.MEAN_G] == pytest.approx(100)
    assert v[stats.MEAN_B] == pytest.approx(50)
    assert v[stats.BRIGHTNESS] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, rel=1e-4)
    assert v[stats.CONTRAST] == pytest.approx(0.0, abs=1e-3)
    assert v[stats.GRAY_FRACTION] == 0.0
    assert (v[stats.HEIGHT], v[stats.WIDTH]) == (50, 60)


def test_grayscale_image_has_equal_channels():
    img = _smooth_image()
    gray = (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).astype(np.uint8)
    colour, g3, g2 = (stats.image_statistics(x) for x in (img, np.repeat(gray[..., None], 3, axis=2), gray))
    assert colour[stats.GRAY_FRACTION] < 0.05
    assert g3[stats.GRAY_FRACTION] == 1.0 and g3[stats.COLOURFULNESS] == 0.0
    assert g2[stats.GRAY_FRACTION] == 1.0
    # Brightness of the gray version is the colour version's luminance.
    assert g3[stats.BRIGHTNESS] == pytest.approx(colour[stats.BRIGHTNESS], abs=1.0)


def test_noise_statistic_rises_with_noise_and_ignores_contrast():
    img = _smooth_image().astype(np.float32)
    rng = np.random.default_rng(1)
    base = stats.image_statistics(img.astype(np.uint8))[stats.NOISE]
    noisy = stats.image_statistics(np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8))[stats.NOISE]
    mean = img.mean()
    flat = stats.image_statistics(((img - mean) * 0.5 + mean).astype(np.uint8))
    assert noisy > 2 * base
    assert flat[stats.NOISE] == pytest.approx(base, rel=0.35)
    assert flat[stats.CONTRAST] < 0.6 * stats.image_statistics(img.astype(np.uint8))[stats.CONTRAST]


def test_swapped_channels_swap_the_means_and_keep_colourfulness():
    img = _smooth_image()
    a, b = stats.image_statistics(img), stats.image_statistics(img[:, :, ::-1])
    assert a[stats.MEAN_R] == pytest.approx(b[stats.MEAN_B])
    assert a[stats.MEAN_B] == pytest.approx(b[stats.MEAN_R])
    assert a[stats.COLOURFULNESS] == pytest.approx(b[stats.COLOURFULNESS])


def _grid_statistics(image: np.ndarray, grid: int) -> np.ndarray:
    """The statistics by their definition, pixel by pixel in float64: the oracle of the batched pass."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = np.clip(np.rint(a.astype(np.float64)), 0, 255)
    h, w = a.shape[:2]
    out = np.zeros(stats.VECTOR_SIZE)
    out[stats.HEIGHT], out[stats.WIDTH] = h, w
    if h == 0 or w == 0:
        return out
    narrow = w < 3
    if narrow:
        a = np.pad(a, ((0, 0), (1, 1), (0, 0)), mode="edge")
    sy, sx = max(1, -(-h // grid)), max(1, -(-(a.shape[1] - 2) // grid))
    ys, xs = np.arange(0, h, sy), np.arange(1, a.shape[1] - 1, sx)
    px = a[ys][:, xs].reshape(-1, 3)
    left, right = a[ys][:, xs - 1, 1].ravel(), a[ys][:, xs + 1, 1].ravel()
    lum = px @ np.array([0.299, 0.587, 0.114])
    g = px[:, 1]
    d1, d2 = px[:, 0] - g, px[:, 2] - g
    out[stats.BRIGHTNESS], out[stats.CONTRAST] = lum.mean(), lum.std()
    out[stats.NOISE] = 0.0 if narrow else np.abs(left + right - 2 * g).mean() / (g.std() + 1)
    out[stats.COLOURFULNESS] = 0.5 * (np.abs(d1) + np.abs(d2)).mean()
    out[stats.GRAY_FRACTION] = np.mean(np.maximum(np.abs(d1), np.abs(d2)) <= 2)
    out[stats.MEAN_R : stats.MEAN_B + 1] = px.mean(axis=0)

    def axis_bin(d: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(d / 32 + 2.5), 0, 4).astype(int)

    out[stats.CHROMA] = np.bincount(5 * axis_bin(d1) + axis_bin(d2), minlength=25) / len(px)
    return out


def _odd_images() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    noise = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((1080, 1920, 3), (64, 66, 3), (33, 95, 3))]
    tiny = [np.full(shape, 9, np.uint8) for shape in ((2, 2, 3), (1, 40, 3), (7, 1, 3), (0, 0, 3))]
    base = _smooth_image()
    views = [base[:, :, ::-1], base[10:60, 5:100], base[::2, ::3]]
    others = [rng.integers(0, 256, (50, 70), dtype=np.uint8), rng.uniform(0, 255, (40, 50, 3)), base[..., 1:2]]
    return [base, *noise, *tiny, *views, *others]


@pytest.mark.parametrize("grid", [stats.INPUT_GRID, 7])
def test_the_batched_statistics_are_their_definition(grid):
    images = _odd_images()
    batch = stats.GridBatch(len(images), grid)
    for image in images:
        batch.add(image)
    rows = batch.compute()
    for image, row in zip(images, rows, strict=True):
        np.testing.assert_allclose(row, _grid_statistics(image, grid), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.image_statistics(image, grid), row, rtol=1e-9, atol=1e-9)
    assert batch.count == 0 and batch.compute().shape == (0, stats.VECTOR_SIZE)


def test_a_slot_reused_by_a_smaller_image_holds_none_of_the_larger_one():
    batch = stats.GridBatch(1)
    small = _smooth_image(h=10, w=12)
    batch.add(np.full((480, 640, 3), 250, np.uint8))
    batch.compute()
    batch.add(small)
    np.testing.assert_allclose(batch.compute()[0], _grid_statistics(small, stats.INPUT_GRID), rtol=1e-5, atol=1e-6)


def test_the_grid_is_bounded_and_close_to_the_full_image():
    img = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    batch = stats.GridBatch(1, 64)
    batch.add(img)
    assert 0 < batch._sizes[0][2] <= 64 * 64
    v = batch.compute()[0]
    assert v[stats.MEAN_R] == pytest.approx(img[..., 0].mean(), abs=2.0)
    assert (v[stats.HEIGHT], v[stats.WIDTH]) == (1080, 1920)


@pytest.mark.parametrize("shape", [(2, 2, 3), (1, 40, 3), (0, 0, 3)])
def test_tiny_images_do_not_break(shape):
    v = stats.image_statistics(np.full(shape, 9, np.uint8))
    assert np.all(np.isfinite(v))


def test_wrong_shape_is_an_input_error():
    with pytest.raises(InputError):
        stats.image_statistics(np.zeros((4, 4, 4), np.uint8))


def test_score_histogram_uses_fixed_bins_and_clips():
    h = stats.score_histogram(np.array([0.0, 0.04, 0.05, 0.999, 1.0, 1.5, -0.2], np.float32), 20)
    assert h.tolist()[0] == 3  # 0.0, 0.04 and the clipped -0.2
    assert h[1] == 1 and h[19] == 3 and h.sum() == 7


def test_psi_is_zero_for_identical_and_large_for_different():
    p = np.full(10, 0.1)
    q = np.zeros(10)
    q[0] = 1.0
    assert stats.psi(p, p, 1000, 1000) == pytest.approx(0.0, abs=1e-12)
    assert stats.psi(q, p, 1000, 1000) > 2.0
    assert stats.js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert stats.js_divergence(q, p) > 0.3


def test_binomial_critical_matches_brute_force():
    n, p, alpha = 40, 0.2, 1e-3
    tails = [sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1)) for k in range(n + 2)]
    expected = next(k for k in range(n + 2) if tails[k] <= alpha)
    assert stats.binomial_critical(n, p, alpha) == expected
    assert stats.binomial_upper_tail(expected, n, p) == pytest.approx(tails[expected], rel=1e-9)


def test_chi2_quantile_is_close_to_tables():
    assert stats.chi2_quantile(10, 0.01) == pytest.approx(23.209, rel=0.01)
    assert stats.chi2_quantile(19, 0.001) == pytest.approx(43.820, rel=0.01)


def test_psi_critical_shrinks_with_sample_size_but_not_below_the_floor():
    small = stats.psi_critical(20, 50, 50, 1e-6, 0.25)
    large = stats.psi_critical(20, 1e6, 1e6, 1e-6, 0.25)
    assert small > 1.0
    assert large == 0.25


def test_upper_rate_and_tail_rate_are_generous():
    assert stats.upper_rate(20, 100) > 0.2
    assert stats.upper_rate(0, 0) == 1.0
    assert stats.tail_rate(0.01, 100) > 0.02


def test_colour_votes_flip_sign_when_red_and_blue_swap():
    rng = np.random.default_rng(5)
    imgs = []
    for _ in range(60):
        img = np.full((40, 50, 3), 60, np.uint8)
        img += rng.integers(0, 6, img.shape, dtype=np.uint8)
        img[5:20, 5:20] = (220, 210, 45)  # yellow: its swap is cyan, a colour these images never have
        imgs.append(img)
    table = np.stack([stats.image_statistics(i) for i in imgs])
    chroma = table[:, stats.CHROMA]
    weights = stats.colour_weights(chroma.mean(0), chroma.std(0), len(table))
    assert weights.any()
    np.testing.assert_array_equal(stats.swap_chroma(weights), -weights)  # antisymmetric under the swap
    votes = stats.colour_votes(chroma, weights)
    swapped = np.stack([stats.image_statistics(i[:, :, ::-1]) for i in imgs])[:, stats.CHROMA]
    np.testing.assert_allclose(stats.colour_votes(swapped, weights), -votes, atol=1e-12)
    assert votes.mean() < -0.5
    gray = np.zeros_like(chroma)
    gray[:, 12] = 1.0
    assert np.all(stats.colour_votes(gray, weights) == 0.0)


def test_share_psi_smooths_both_sides_alike():
    p = np.array([0.5, 0.5, 0.0])
    assert stats.share_psi(p, p, 50, 5000) == pytest.approx(0.0, abs=1e-12)
    assert stats.share_psi(np.array([0.2, 0.3, 0.5]), p, 50, 50) > 0.3
