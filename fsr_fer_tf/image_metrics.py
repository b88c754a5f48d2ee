"""PSNR and SSIM of super-resolved images, as the SR literature scores them.

Pure NumPy (no TensorFlow, no SciPy), float64 throughout. The conventions
are those of the MATLAB script `Evaluate_PSNR_SSIM.m` shipped with
EDSR/RCAN/Meta-SR, and of BasicSR's `calculate_psnr` / `calculate_ssim`
with `test_y_channel=True`:

* Images are in 0..255 (uint8 or float). Both the SR output and the
  ground truth are first quantised like MATLAB's `uint8(x)` (round half away
  from zero, clip to 0..255; see `quantize`), as SR outputs are saved as
  8-bit images before they are scored.
* RGB images are scored on the luma Y of MATLAB's `rgb2ycbcr`
  (ITU-R BT.601, studio range 16..235):
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, R, G, B in 0..255.
  Y is not rounded. One-channel (grey) images are scored on their own values,
  not mapped to Y, which is what both reference scripts do (they convert
  only 3-channel images). `rgb_to_y` on its own does map grey values to Y.
* `shave` pixels are cropped from every border before scoring; the
  literature shaves `scale` pixels (RCAN) or `crop_border = scale` (BasicSR).
* PSNR = 10 log10(255^2 / MSE), the MSE over the (shaved) pixels of one
  image. Identical images give +inf (BasicSR returns inf too).
* SSIM is Wang et al.'s `ssim_index.m` (IEEE TIP 2004) with its defaults:
  an 11x11 Gaussian window with sigma 1.5 (MATLAB's
  `fspecial('gaussian', 11, 1.5)`, normalised to sum 1), K1 = 0.01,
  K2 = 0.03, L = 255, 'valid' filtering (only windows that fit inside the
  image, so an H x W image gives an (H-10) x (W-10) map), and the mean of
  that map. With `y_channel=False` SSIM is computed per channel and the
  channels are averaged (BasicSR).

The reference scripts compute Y in float32; float64 here moves PSNR and SSIM
only in digits far below those the papers report.
"""

import numpy as np

PEAK = 255.0
# MATLAB rgb2ycbcr, Y row, for R, G, B in 0..1 and Y in 0..255.
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def rgb_to_y(images):
    """Y (luma) of MATLAB's `rgb2ycbcr`, in 0..255, not rounded.

    Args:
        images: uint8 or float array in 0..255 of shape [..., H, W, 3] (RGB),
            [..., H, W, 1] or [..., H, W] (grey). The last axis decides: 3 is
            RGB, 1 is grey with a channel axis, anything else is the width of
            a grey image (so a grey image whose width is 1 or 3 needs the
            channel axis).

    Returns:
        float64 [..., H, W]: 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
        Grey values v are treated as R = G = B = v, i.e. 16 + 219 / 255 * v.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim >= 1 and x.shape[-1] == 3:
        rgb = x
    else:
        if x.ndim >= 1 and x.shape[-1] == 1:
            x = x[..., 0]
        rgb = np.repeat(x[..., None], 3, axis=-1)
    return Y_OFFSET + rgb @ np.asarray(Y_WEIGHTS) / PEAK


def quantize(images):
    """Rounds and clips like MATLAB's `uint8(x)`, returned as float64.

    Halves round away from zero (0.5 -> 1, 2.5 -> 3; NumPy's `np.round`
    would give 0 and 2), then values are clipped to 0..255.

    Args:
        images: array of any shape, in 0..255 (values outside are clipped).

    Returns:
        float64 array of the same shape holding integers in 0..255.

    Raises:
        ValueError: the array holds NaN (MATLAB would make it 0 and hide a
            broken model output).
    """
    x = np.asarray(images, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("images contain NaN")
    # floor(x + 0.5) is half-away-from-zero for x >= 0; negatives clip to 0.
    return np.clip(np.floor(x + 0.5), 0.0, PEAK)


def _check_shave(shave):
    if isinstance(shave, bool) or not isinstance(shave, (int, np.integer)):
        raise TypeError(f"shave must be an int, got {shave!r}")
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")


def _prepare(sr, hr, shave, y_channel, min_size):
    """Quantised, (Y-converted) and shaved planes, [B, C', H', W'].

    Returns the planes of sr and hr and whether the input was one image.
    """
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"sr has shape {sr.shape} but hr has {hr.shape}")
    if sr.ndim not in (3, 4):
        raise ValueError(
            f"expected [B, H, W, C] or [H, W, C] images, got shape {sr.shape}"
        )
    if sr.shape[-1] not in (1, 3):
        raise ValueError(
            f"expected 1 or 3 channels (last axis), got {sr.shape[-1]} "
            f"in shape {sr.shape}"
        )
    _check_shave(shave)
    single = sr.ndim == 3
    if single:
        sr, hr = sr[None], hr[None]
    height, width = sr.shape[1] - 2 * shave, sr.shape[2] - 2 * shave
    if height < min_size or width < min_size:
        raise ValueError(
            f"{sr.shape[1]}x{sr.shape[2]} images shaved by {shave} leave "
            f"{max(height, 0)}x{max(width, 0)}, need at least "
            f"{min_size}x{min_size}"
        )
    planes = []
    for x in (sr, hr):
        x = quantize(x)
        x = x[:, shave : shave + height, shave : shave + width, :]
        if y_channel and x.shape[-1] == 3:
            x = rgb_to_y(x)[..., None]
        planes.append(np.moveaxis(x, -1, 1))  # [B, C', H', W']
    return planes[0], planes[1], single


def psnr(sr, hr, shave=0, y_channel=True):
    """Per-image PSNR in dB (peak 255), as the SR literature reports it.

    Both images are quantised (`quantize`), RGB ones are reduced to Y when
    `y_channel`, `shave` pixels are cropped from every border, and
    PSNR = 10 log10(255^2 / MSE) over the remaining pixels (and channels,
    when `y_channel` is False or for grey images).

    Args:
        sr: super-resolved images in 0..255, [B, H, W, C] or one [H, W, C],
            C = 1 (grey) or 3 (RGB).
        hr: ground truth, same shape.
        shave: pixels cropped from each of the four borders (the literature
            uses the scale factor), >= 0.
        y_channel: score RGB images on Y (the literature) rather than on all
            three channels. Grey images are scored on their values either way.

    Returns:
        float64 [B] of dB, or a float64 scalar for one [H, W, C] image. An
        image identical to its ground truth (after quantisation) gives +inf.

    Raises:
        ValueError: shapes differ, are not [B, H, W, C] / [H, W, C], the
            channel count is not 1 or 3, shave is negative, nothing is left
            after shaving, or an image holds NaN.
        TypeError: shave is not an int.
    """
    a, b, single = _prepare(sr, hr, shave, y_channel, min_size=1)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(PEAK**2 / mse)
    return out[0] if single else out


def _gaussian_1d(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """1-D factor of fspecial('gaussian', size, sigma), normalised to sum 1.

    The 2-D window exp(-(x^2 + y^2) / (2 sigma^2)) / sum is the outer
    product of this vector with itself.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x, g):
    """MATLAB filter2(outer(g, g), x, 'valid') over the last two axes."""
    n = g.shape[0]
    x = np.lib.stride_tricks.sliding_window_view(x, n, axis=-2) @ g
    return np.lib.stride_tricks.sliding_window_view(x, n, axis=-1) @ g


def ssim(sr, hr, shave=0, y_channel=True):
    """Per-image mean SSIM, as MATLAB's `ssim_index` (Wang et al. 2004).

    Both images are quantised, RGB ones are reduced to Y when `y_channel`,
    `shave` pixels are cropped from every border; then the SSIM map of the
    11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255 is
    computed over the windows that fit in the image ('valid') and averaged.

    Args:
        sr: super-resolved images in 0..255, [B, H, W, C] or one [H, W, C],
            C = 1 (grey) or 3 (RGB).
        hr: ground truth, same shape.
        shave: pixels cropped from each of the four borders, >= 0; at least
            11x11 pixels must remain.
        y_channel: score RGB images on Y (the literature) rather than
            averaging the SSIM of the three channels. Grey images are scored
            on their values either way.

    Returns:
        float64 [B], or a float64 scalar for one [H, W, C] image; 1.0 for
        identical images.

    Raises:
        ValueError: shapes differ, are not [B, H, W, C] / [H, W, C], the
            channel count is not 1 or 3, shave is negative, the shaved
            image is smaller than the 11x11 window, or an image holds NaN.
        TypeError: shave is not an int.
    """
    a, b, single = _prepare(sr, hr, shave, y_channel, min_size=SSIM_WINDOW)
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    g = _gaussian_1d()
    # One filtering pass over the five images the statistics need.
    stats = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), g)
    mu1, mu2, e11, e22, e12 = stats
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / (
        (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    )
    # Mean over the map, then over channels (maps are all the same size).
    out = ssim_map.mean(axis=(1, 2, 3))
    return out[0] if single else out
