"""Image decoding and validation shared by the readers and the pipeline.

The readers validate every image file when a dataset is loaded, with the very
decoder the tf.data pipeline uses later (`decode_image`), so a corrupt or
truncated file is reported once, by name, instead of stopping training hours
later with a bare TensorFlow error. Both passes run inside tf.data, which
decodes in parallel in C++ (about 6x the files/s of an eager Python loop).
"""

import collections
import os
import re
import time

import numpy as np
import tensorflow as tf
from absl import logging

from fsr_fer_tf import errors
from fsr_fer_tf.data import sources

# Log progress when a pass over this many files or more takes a while.
_PROGRESS_MIN_FILES = 2000
_PROGRESS_EVERY_S = 5.0
# Elements per tf.data batch when streaming results back to Python.
_CHUNK = 512

CORRUPT_REASON = "corrupt or truncated image: "


def decode_image(contents):
    """Decodes JPEG/PNG/BMP (or GIF's first frame) bytes to uint8 RGB.

    Grey images are repeated over 3 channels and RGBA loses its alpha, as
    `tf.io.decode_image(channels=3)` does. A truncated JPEG raises (TF's
    `try_recover_truncated` is off) rather than returning a grey-filled face.
    Works eagerly and in graph mode.

    Args:
        contents: scalar string tensor, the file's bytes.

    Returns:
        uint8 tensor [H, W, 3].
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def tf_error_message(error):
    """The useful part of a TensorFlow op error, on one line.

    Strips the "{{function_node ...}}" prefix and "[Op:DecodeImage]" suffix
    that eager errors carry.

    Args:
        error: a `tf.errors.OpError` (or any exception).

    Returns:
        str.
    """
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message, flags=re.S)
    return " ".join(message.split()) or type(error).__name__


def _decode_one_eagerly(path):
    """Decodes one file eagerly; returns (image or None, error message)."""
    try:
        return decode_image(tf.io.read_file(path)).numpy(), None
    except (tf.errors.OpError, OSError) as e:
        return None, tf_error_message(e)


class _Progress:
    """Logs 'what i/n (files/s)' every few seconds for long passes."""

    def __init__(self, what, total):
        self.what = what
        self.total = total
        self.start = time.perf_counter()
        self.last = self.start
        self.enabled = total >= _PROGRESS_MIN_FILES

    def update(self, done):
        now = time.perf_counter()
        if self.enabled and now - self.last >= _PROGRESS_EVERY_S:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            logging.info(
                "%s: %d/%d files (%.0f files/s)",
                self.what,
                done,
                self.total,
                rate,
            )

    def finish(self):
        elapsed = time.perf_counter() - self.start
        if self.enabled:
            logging.info(
                "%s: %d files in %.1f s (%.0f files/s)",
                self.what,
                self.total,
                elapsed,
                self.total / max(elapsed, 1e-9),
            )
        return elapsed


def validate_files(paths, strict=False, what="validating images"):
    """Decodes every file once and reports those that fail.

    Args:
        paths: list of image file paths.
        strict: raise on the first (lowest-index) bad file instead of
            skipping it.
        what: label of the progress log lines.

    Returns:
        (keep, skipped): bool numpy [len(paths)] (True where the file
        decodes) and a list of `sources.Skipped` for the others, with reason
        "corrupt or truncated image: <TensorFlow's message>".

    Raises:
        errors.DataError: when `strict` and a file does not decode.
    """
    n = len(paths)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep, []

    def check(index, path):
        shape = tf.shape(decode_image(tf.io.read_file(path)))
        return index, shape

    # ignore_errors drops the elements whose decode fails; the gaps in the
    # surviving (ordered) indices are the bad files, re-decoded eagerly
    # below only to get their message.
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(n, dtype=tf.int64), tf.constant(paths, dtype=tf.string))
    )
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors().batch(_CHUNK).prefetch(2)
    progress = _Progress(what, n)
    next_expected = 0
    for indices, _ in ds.as_numpy_iterator():
        keep[indices] = True
        if strict and (
            indices[0] != next_expected
            or (indices[-1] - indices[0] + 1 != len(indices))
        ):
            break
        next_expected = int(indices[-1]) + 1
        progress.update(next_expected)
    progress.finish()
    bad = np.flatnonzero(~keep)
    if strict and len(bad):
        # Every file before the first gap decoded, so bad[0] is the first
        # bad file in order (files after a break were never marked kept).
        first = int(bad[0])
        _, message = _decode_one_eagerly(paths[first])
        raise errors.DataError(
            f"{paths[first]}: {CORRUPT_REASON}{message}; replace or delete "
            "the file, or drop --strict to skip bad files."
        )
    skipped = []
    for i in bad:
        _, message = _decode_one_eagerly(paths[i])
        if message is None:
            # Decoded the second time (e.g. restored meanwhile): keep it.
            keep[i] = True
            continue
        skipped.append(sources.Skipped(paths[i], CORRUPT_REASON + message))
    return keep, skipped


def read_images(paths, image_size, resize_fn, what="decoding images"):
    """Decodes image files into one uint8 array, resized where needed.

    Files are decoded in parallel by tf.data. Faces already image_size x
    image_size (all of RAF-DB's aligned set) come back in dense batches;
    the others are decoded again one by one and resized with `resize_fn`,
    batched per source size (a tree of varied sizes costs one call per
    size).

    Args:
        paths: list of image file paths (validated already).
        image_size: side of the square output.
        resize_fn: callable(uint8 [B, h, w, 3], (S, S)) -> uint8 [B, S, S, 3].
        what: label of the progress log lines.

    Returns:
        uint8 numpy [len(paths), S, S, 3].

    Raises:
        errors.DataError: a file no longer decodes (changed since loading).
    """
    n = len(paths)
    size = image_size
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    if n == 0:
        return out

    def decode_square(path):
        image = decode_image(tf.io.read_file(path))
        shape = tf.shape(image)
        fits = tf.logical_and(
            tf.equal(shape[0], size), tf.equal(shape[1], size)
        )
        square = tf.cond(
            fits,
            lambda: tf.reshape(image, [size, size, 3]),
            lambda: tf.zeros([size, size, 3], tf.uint8),
        )
        return square, fits

    progress = _Progress(what, n)
    others = []
    done = 0
    for batch, fits in _decode_stream(paths, decode_square, _CHUNK):
        out[done : done + len(batch)] = batch
        others.extend(done + np.flatnonzero(~fits))
        done += len(batch)
        progress.update(done)
    progress.finish()
    if others:
        by_size = collections.defaultdict(list)
        other_paths = [paths[i] for i in others]
        for i, image in zip(
            others,
            _decode_stream(
                other_paths, lambda p: decode_image(tf.io.read_file(p)), None
            ),
        ):
            by_size[image.shape[:2]].append((i, image))
        for items in by_size.values():
            for start in range(0, len(items), 256):
                chunk = items[start : start + 256]
                batch = np.stack([image for _, image in chunk])
                resized = np.asarray(resize_fn(batch, (size, size)))
                for (i, _), image in zip(chunk, resized):
                    out[i] = image
    return out


def _decode_stream(paths, fn, batch_size):
    """Yields fn(path) results in order, decoded in parallel by tf.data.

    Raises a DataError naming the file when one no longer decodes.
    """
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        ds = ds.batch(batch_size)
    iterator = ds.prefetch(2).as_numpy_iterator()
    done = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            # The error belongs to the first file of the failed element.
            raise errors.DataError(
                f"{paths[done]}: {CORRUPT_REASON}{tf_error_message(e)} "
                "(maybe a file after it; they decoded when the dataset was "
                "loaded); restore the file and run again."
            ) from None
        done += len(item[0]) if batch_size else 1
        yield item


def is_image_name(name):
    """True when `name` has an image extension (any case)."""
    return os.path.splitext(name)[1].lower() in sources.IMAGE_EXTENSIONS
