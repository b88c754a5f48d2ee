"""Face detection for the recognizer: boxes in the input's own pixels.

Three detectors, none of which downloads anything:

- `HaarDetector`: OpenCV's frontal-face Haar cascade, shipped inside the
  opencv-python-headless (< 5) wheels. Its window is 24x24, so to find
  faces down to `min_face` pixels (12 by default) it also scans a copy
  upscaled by 24 / min_face; very large images are scanned on a copy
  downscaled to `max_side` (boxes are mapped back to the original).
- `MTCNNDetector`: the `mtcnn` package (`pip install -e ".[mtcnn]"`; its
  weights ship in its wheel), if installed.
- `WholeImage` (`none`): every input is one face, e.g. pre-cropped faces.

Every detector takes an RGB uint8 image [H, W, 3] and returns a list of
(x, y, w, h) boxes, integers, inside the image.
"""

import cv2
import numpy as np

from fsr_fer_tf import errors
from fsr_fer_tf.data import group

DETECTORS = ("haar", "mtcnn", "none")
_HAAR_FILE = "haarcascade_frontalface_default.xml"
_HAAR_WINDOW = 24  # the cascade's training window


def merge_boxes(boxes, iou=0.3):
    """Drops boxes overlapping an earlier, larger one by more than `iou`
    (one face found at two scans), largest first; returns them sorted by
    (y, x)."""
    kept = []
    for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
        if all(group.iou(box, k) <= iou for k in kept):
            kept.append(box)
    return sorted(kept, key=lambda b: (b[1], b[0]))


def clip_box(box, width, height):
    """(x, y, w, h) clipped to the image; None if nothing is left."""
    x, y, w, h = (int(round(v)) for v in box)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


class HaarDetector:
    """OpenCV's frontal Haar cascade, tuned for small faces.

    Args:
        min_face: smallest face side in pixels to find (>= 6).
        max_side: images with a longer side are scanned on a downscaled copy
            (faces smaller than min_face there are lost; see `small_pass`).
        scale_factor: the cascade's pyramid step (1.05; on two group
            pictures of 30 FER-2013 val faces at 16..120 px, 1.1 found 43%
            and 60% of them in half the time, 1.05 57% and 67%).
        min_neighbors: detections a face needs (higher: fewer false ones).
    """

    def __init__(
        self, min_face=12, max_side=1600, scale_factor=1.05, min_neighbors=4
    ):
        errors.require(min_face >= 6, f"min_face must be >= 6, got {min_face}")
        errors.require(
            max_side >= 64, f"max_side must be >= 64, got {max_side}"
        )
        path = cv2.data.haarcascades + _HAAR_FILE
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise errors.ConfigError(
                f"OpenCV's Haar cascade {path} did not load; reinstall "
                "opencv-python-headless<5 (its wheels ship the cascades)."
            )
        self.min_face = int(min_face)
        self.max_side = int(max_side)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def _scan(self, grey, factor, max_face=None):
        """Boxes found on `grey` resized by `factor`, in original pixels
        (faces up to `max_face` original pixels, if given)."""
        if factor != 1.0:
            size = (
                max(1, round(grey.shape[1] * factor)),
                max(1, round(grey.shape[0] * factor)),
            )
            interp = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
            grey = cv2.resize(grey, size, interpolation=interp)
        kwargs = {}
        if max_face is not None:
            side = int(round(max_face * factor))
            kwargs["maxSize"] = (side, side)
        found = self.cascade.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(_HAAR_WINDOW, _HAAR_WINDOW),
            **kwargs,
        )
        return [tuple(v / factor for v in box) for box in np.asarray(found)]

    def __call__(self, image):
        height, width = image.shape[:2]
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        longest = max(height, width)
        base = min(1.0, self.max_side / longest)
        boxes = self._scan(grey, base)
        # Faces below the cascade's 24x24 window at `base`: scan a copy
        # upscaled to find them down to min_face (within 2 x max_side, for
        # memory and time), only up to the size the first scan starts at.
        small = min(_HAAR_WINDOW / self.min_face, 2 * self.max_side / longest)
        if small > base * 1.2:
            boxes += self._scan(grey, small, max_face=1.5 * _HAAR_WINDOW / base)
        boxes = [clip_box(b, width, height) for b in boxes]
        return merge_boxes(
            [b for b in boxes if b and min(b[2], b[3]) >= self.min_face]
        )


class MTCNNDetector:
    """The `mtcnn` package's detector (optional extra).

    Args:
        min_face: smallest face side in pixels.
    """

    def __init__(self, min_face=12):
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise errors.ConfigError(
                "--detector=mtcnn needs the mtcnn package: pip install -e "
                '".[mtcnn]" (its weights ship in its wheel), or use '
                "--detector=haar."
            ) from None
        self.model = MTCNN()
        self.min_face = int(min_face)

    def __call__(self, image):
        height, width = image.shape[:2]
        boxes = []
        for found in self.model.detect_faces(image):
            box = clip_box(found["box"], width, height)
            if box and min(box[2], box[3]) >= self.min_face:
                boxes.append(box)
        return merge_boxes(boxes)


class WholeImage:
    """Every image is one face (`--detector=none`: pre-cropped faces)."""

    def __call__(self, image):
        height, width = image.shape[:2]
        return [(0, 0, int(width), int(height))]


def make_detector(name, min_face=12, max_side=1600):
    """The detector called `name` ("haar", "mtcnn" or "none")."""
    errors.require(
        name in DETECTORS,
        f"--detector={name} is unknown; use one of {', '.join(DETECTORS)}.",
    )
    if name == "haar":
        return HaarDetector(min_face=min_face, max_side=max_side)
    if name == "mtcnn":
        return MTCNNDetector(min_face=min_face)
    return WholeImage()
