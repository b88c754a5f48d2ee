"""Tests for fsr_fer_tf.image_metrics against hand-computed values and a
naive SSIM written out window by window."""

import itertools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fsr_fer_tf import image_metrics as im

C1 = (0.01 * 255) ** 2  # 6.5025
C2 = (0.03 * 255) ** 2  # 58.5225


# --- rgb_to_y -----------------------------------------------------------


def test_rgb_to_y_hand_computed_pixels():
    pixels = np.array(
        [
            [255, 0, 0],  # red: 16 + 65.481
            [0, 255, 0],  # green: 16 + 128.553
            [0, 0, 255],  # blue: 16 + 24.966
            [255, 255, 255],  # white: 16 + 219
            [0, 0, 0],  # black
            [128, 128, 128],  # grey: 16 + 219 * 128 / 255
        ],
        dtype=np.uint8,
    ).reshape(1, 6, 3)
    y = im.rgb_to_y(pixels)
    assert y.dtype == np.float64
    assert y.shape == (1, 6)
    np.testing.assert_allclose(
        y[0],
        [81.481, 144.553, 40.966, 235.0, 16.0, 125.929411764706],
        rtol=0,
        atol=1e-9,
    )


def test_rgb_to_y_grey_is_rgb_with_equal_channels():
    rng = np.random.default_rng(0)
    grey = rng.uniform(0, 255, size=(2, 5, 7))
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    expected = im.rgb_to_y(rgb)
    assert expected.shape == (2, 5, 7)
    np.testing.assert_array_equal(im.rgb_to_y(grey), expected)
    np.testing.assert_array_equal(im.rgb_to_y(grey[..., None]), expected)
    np.testing.assert_allclose(expected, 16 + 219 / 255 * grey, atol=1e-12)


# --- quantize -----------------------------------------------------------


def test_quantize_rounds_half_away_from_zero_and_clips():
    x = [0.5, 1.5, 2.5, -3.0, -0.4, 10.4, 10.49, 254.5, 255.5, 300.0]
    q = im.quantize(x)
    assert q.dtype == np.float64
    np.testing.assert_array_equal(q, [1, 2, 3, 0, 0, 10, 10, 255, 255, 255])
    u8 = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(im.quantize(u8), u8.astype(np.float64))


# --- psnr ---------------------------------------------------------------


def test_psnr_hand_computed_grey():
    hr = np.zeros((4, 4, 1))
    sr = np.zeros((4, 4, 1))
    sr[:2] = 2.0  # 8 of 16 pixels off by 2: MSE = 8 * 4 / 16 = 2
    value = im.psnr(sr, hr)
    assert np.ndim(value) == 0
    assert value == pytest.approx(10 * math.log10(255**2 / 2), abs=1e-12)
    assert value == pytest.approx(45.12050365, abs=1e-7)


def test_psnr_hand_computed_rgb_y_and_all_channels():
    hr = np.zeros((2, 2, 3))
    sr = np.zeros((2, 2, 3))
    sr[0, 0, 0] = 255  # one pure red pixel of four
    # Y: that pixel is off by 65.481, MSE = 65.481^2 / 4.
    assert im.psnr(sr, hr) == pytest.approx(17.82909746, abs=1e-7)
    # All channels: one value of 12 off by 255, MSE = 255^2 / 12.
    assert im.psnr(sr, hr, y_channel=False) == pytest.approx(
        10 * math.log10(12), abs=1e-12
    )


def test_psnr_is_per_image_on_batches():
    hr = np.full((3, 5, 5, 1), 100.0)
    sr = hr.copy()
    sr[1] += 1  # MSE 1: 20 log10(255)
    sr[2, 0, 0] += 5  # MSE 25 / 25 = 1 as well
    out = im.psnr(sr, hr)
    assert out.shape == (3,)
    assert out[0] == np.inf
    np.testing.assert_allclose(out[1:], [48.1308036087] * 2, atol=1e-9)


def test_psnr_grey_is_scored_on_its_values_not_on_y():
    # The reference scripts convert only 3-channel images.
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, size=(12, 12, 1)).astype(np.float64)
    sr = np.clip(hr + rng.integers(-20, 21, size=hr.shape), 0, 255)
    mse = np.mean((sr - hr) ** 2)
    grey = im.psnr(sr, hr)
    assert grey == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)
    assert im.psnr(sr, hr, y_channel=False) == grey
    # The same picture stored as RGB is scored on Y = 16 + 219/255 v:
    # MSE times (219/255)^2, i.e. 20 log10(255/219) = 1.32 dB more.
    as_rgb = im.psnr(np.repeat(sr, 3, -1), np.repeat(hr, 3, -1))
    assert as_rgb - grey == pytest.approx(1.3219213119, abs=1e-9)


def test_psnr_shave_crops_exactly_the_border():
    hr = np.zeros((20, 20, 1))
    sr = np.zeros((20, 20, 1))
    sr[:2] = sr[-2:] = sr[:, :2] = sr[:, -2:] = 10.0  # 2-pixel frame
    # No shave: 400 - 16^2 = 144 of 400 pixels off by 10.
    assert im.psnr(sr, hr) == pytest.approx(
        10 * math.log10(255**2 / (144 * 100 / 400)), abs=1e-12
    )
    # shave=1: 18x18 left, its outer ring 18^2 - 16^2 = 68 pixels off.
    assert im.psnr(sr, hr, shave=1) == pytest.approx(
        10 * math.log10(255**2 / (68 * 100 / 324)), abs=1e-12
    )
    assert im.psnr(sr, hr, shave=2) == np.inf
    assert im.psnr(sr, hr, shave=3) == np.inf


def test_psnr_quantises_before_scoring():
    hr = np.full((6, 6, 3), 10.0)
    assert im.psnr(hr + 0.4, hr) == np.inf  # 10.4 -> 10
    assert im.psnr(hr - 0.5, hr) == np.inf  # 9.5 -> 10
    # 10.5 -> 11: each channel off by 1, so Y is off by 219/255 and the
    # MSE is (219/255)^2.
    assert im.psnr(hr + 0.5, hr) == pytest.approx(
        48.1308036087 + 20 * math.log10(255 / 219), abs=1e-9
    )
    assert im.psnr(hr + 0.5, hr, y_channel=False) == pytest.approx(
        48.1308036087, abs=1e-9
    )
    # Values outside 0..255 are clipped like uint8().
    assert im.psnr(np.full((6, 6, 1), 300.0), np.full((6, 6, 1), 255)) == (
        np.inf
    )


# --- ssim ---------------------------------------------------------------


def _naive_ssim_plane(x, y):
    """SSIM of two 2-D float64 planes, window by window, from the paper."""
    n, sigma = 11, 1.5
    w = np.empty((n, n))
    for u in range(n):
        for v in range(n):
            w[u, v] = math.exp(-((u - 5) ** 2 + (v - 5) ** 2) / (2 * sigma**2))
    w /= w.sum()
    values = []
    for i in range(x.shape[0] - n + 1):
        for j in range(x.shape[1] - n + 1):
            p = x[i : i + n, j : j + n]
            q = y[i : i + n, j : j + n]
            mu_p = np.sum(w * p)
            mu_q = np.sum(w * q)
            var_p = np.sum(w * (p - mu_p) ** 2)
            var_q = np.sum(w * (q - mu_q) ** 2)
            cov = np.sum(w * (p - mu_p) * (q - mu_q))
            values.append(
                (2 * mu_p * mu_q + C1)
                * (2 * cov + C2)
                / ((mu_p**2 + mu_q**2 + C1) * (var_p + var_q + C2))
            )
    assert len(values) == (x.shape[0] - 10) * (x.shape[1] - 10)
    return float(np.mean(values))


def _y(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def _random_pair(shape, seed, noise=25):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=shape).astype(np.float64)
    sr = np.clip(np.round(hr + rng.normal(0, noise, size=shape)), 0, 255)
    return sr, hr


def test_ssim_identical_images_is_one():
    _, hr = _random_pair((2, 16, 16, 3), seed=2)
    np.testing.assert_allclose(im.ssim(hr, hr), [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(
        im.ssim(hr, hr, y_channel=False), [1.0, 1.0], atol=1e-12
    )


def test_ssim_matches_naive_reference_grey():
    sr, hr = _random_pair((16, 16, 1), seed=3, noise=60)
    expected = _naive_ssim_plane(sr[..., 0], hr[..., 0])
    assert 0.2 < expected < 0.95  # a pair that is neither equal nor unrelated
    value = im.ssim(sr, hr)
    assert np.ndim(value) == 0
    assert value == pytest.approx(expected, abs=1e-10)


def test_ssim_matches_naive_reference_rgb():
    sr, hr = _random_pair((16, 16, 3), seed=4)
    on_y = _naive_ssim_plane(_y(sr), _y(hr))
    assert im.ssim(sr, hr) == pytest.approx(on_y, abs=1e-10)
    per_channel = np.mean(
        [_naive_ssim_plane(sr[..., c], hr[..., c]) for c in range(3)]
    )
    assert abs(per_channel - on_y) > 1e-3  # the two modes do differ
    assert im.ssim(sr, hr, y_channel=False) == pytest.approx(
        per_channel, abs=1e-10
    )


def test_ssim_batch_with_shave_matches_naive_reference():
    sr, hr = _random_pair((2, 18, 17, 1), seed=5)
    out = im.ssim(sr, hr, shave=1)
    assert out.shape == (2,)
    expected = [
        _naive_ssim_plane(sr[k, 1:-1, 1:-1, 0], hr[k, 1:-1, 1:-1, 0])
        for k in range(2)
    ]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)
    assert abs(expected[0] - expected[1]) > 1e-3  # per image, not pooled


def test_ssim_constant_shift_hand_computed():
    # Constant images: every variance and covariance is 0, so SSIM is the
    # luminance term (2 a b + C1) / (a^2 + b^2 + C1) of every window.
    hr = np.full((16, 16, 1), 100.0)
    sr = hr + 10
    assert im.ssim(sr, hr) == pytest.approx(0.9954764441, abs=1e-10)
    assert im.ssim(sr, hr) == pytest.approx(
        (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1), abs=1e-12
    )


def _test_face(size=48):
    """A fixed smooth picture with texture, 0..255."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 128 + 60 * np.sin(6 * xx) * np.cos(4 * yy) + 40 * (xx - yy)
    return np.clip(img, 0, 255)[..., None]


def test_ssim_decreases_with_noise_and_with_contrast():
    hr = _test_face()
    rng = np.random.default_rng(6)
    pattern = rng.normal(size=hr.shape)
    noisy = [
        im.ssim(np.clip(hr + std * pattern, 0, 255), hr)
        for std in (1, 2, 4, 8, 16, 32)
    ]
    assert all(a > b for a, b in itertools.pairwise(noisy)), noisy
    assert noisy[0] > 0.9 and noisy[-1] < 0.5, noisy
    mean = hr.mean()
    faded = [
        im.ssim(mean + k * (hr - mean), hr) for k in (1.0, 0.8, 0.6, 0.4, 0.2)
    ]
    assert faded[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(faded)), faded
    # Symmetric in its two arguments.
    sr = np.clip(hr + 8 * pattern, 0, 255)
    assert im.ssim(sr, hr) == pytest.approx(im.ssim(hr, sr), abs=1e-12)


def test_ssim_quantises_before_scoring():
    _, hr = _random_pair((16, 16, 1), seed=7)
    assert im.ssim(hr + 0.4, hr) == pytest.approx(1.0, abs=1e-12)
    assert im.ssim(hr + 0.5, hr) < 1 - 1e-6


# --- errors -------------------------------------------------------------


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"sr has shape \(4, 4, 1\)"):
        im.psnr(np.zeros((4, 4, 1)), np.zeros((4, 5, 1)))


def test_wrong_channel_count():
    with pytest.raises(ValueError, match="1 or 3 channels.*got 4"):
        im.ssim(np.zeros((1, 16, 16, 4)), np.zeros((1, 16, 16, 4)))


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"\[B, H, W, C\] or \[H, W, C\]"):
        im.psnr(np.zeros((16, 16)), np.zeros((16, 16)))


def test_smaller_than_window_after_shaving():
    x = np.zeros((20, 20, 1))
    assert np.isfinite(im.ssim(x, x, shave=4))  # 12x12 still fits
    with pytest.raises(ValueError, match="leave 10x10, need at least 11x11"):
        im.ssim(x, x, shave=5)


def test_nothing_left_after_shaving_psnr():
    with pytest.raises(ValueError, match="leave 0x0, need at least 1x1"):
        im.psnr(np.zeros((4, 4, 1)), np.zeros((4, 4, 1)), shave=2)


def test_negative_shave():
    with pytest.raises(ValueError, match="shave must be >= 0, got -1"):
        im.psnr(np.zeros((4, 4, 1)), np.zeros((4, 4, 1)), shave=-1)


def test_non_integer_shave():
    with pytest.raises(TypeError, match="shave must be an int"):
        im.ssim(np.zeros((16, 16, 1)), np.zeros((16, 16, 1)), shave=1.5)


def test_nan_output():
    with pytest.raises(ValueError, match="NaN"):
        im.psnr(np.full((4, 4, 1), np.nan), np.zeros((4, 4, 1)))


def test_module_imports_neither_tensorflow_nor_scipy():
    path = os.path.abspath(im.__file__)
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("m", {path!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        print(sorted(m for m in ("tensorflow", "scipy", "keras")
                     if m in sys.modules))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
