"""Group pictures made of known faces, to measure detection and prediction.

`group_image` pastes faces (e.g. FER-2013 validation faces) at chosen sizes
onto a smooth background, each with a margin of its own mirrored border so
that the detector sees some head around the face, and returns the picture
with the true box and label of every face. The predict tests, its benchmark
and notebook 04 use it: real faces, known boxes, no photograph to ship.
"""

import cv2
import numpy as np

# Mirrored context around each face, as a fraction of the face side.
CONTEXT = 0.25


def group_image(faces, sizes, labels=None, canvas=(900, 1600), seed=0, gap=20):
    """Faces pasted in rows on a smooth grey background.

    Args:
        faces: uint8 faces, [h, w] grey or [h, w, 3] RGB, square or not.
        sizes: the side in pixels of each pasted face (its box).
        labels: optional class index of each face.
        canvas: (height, width) of the picture.
        seed: seed of the background noise.
        gap: pixels between pasted faces.

    Returns:
        (image uint8 [H, W, 3] RGB, [{"box": (x, y, w, h), "label": int or
        None, "size": side}] for the faces that fit).

    Raises:
        ValueError: a face does not fit on the canvas.
    """
    height, width = canvas
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    ground = 90 + 60 * xx / width + 30 * yy / height
    ground = ground + rng.normal(0, 3, (height, width))
    image = np.repeat(
        np.clip(ground, 0, 255).astype(np.uint8)[..., None], 3, -1
    )
    truth = []
    x, y, row_height = gap, gap, 0
    for i, (face, side) in enumerate(zip(faces, sizes)):
        face = np.asarray(face)
        if face.ndim == 2:
            face = np.repeat(face[..., None], 3, -1)
        side = int(side)
        margin = int(round(CONTEXT * face.shape[0]))
        padded = cv2.copyMakeBorder(
            face, margin, margin, margin, margin, cv2.BORDER_REFLECT
        )
        outer = int(round(side * padded.shape[0] / face.shape[0]))
        shrink = outer < padded.shape[0]
        padded = cv2.resize(
            padded,
            (outer, outer),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC,
        )
        if x + outer + gap > width:
            x, y, row_height = gap, y + row_height + gap, 0
        if y + outer + gap > height or outer + 2 * gap > width:
            raise ValueError(
                f"face {i} ({side} px) does not fit on the {width}x{height} "
                "canvas; use fewer or smaller faces."
            )
        image[y : y + outer, x : x + outer] = padded
        offset = (outer - side) // 2
        truth.append(
            {
                "box": (x + offset, y + offset, side, side),
                "label": None if labels is None else int(labels[i]),
                "size": side,
            }
        )
        x += outer + gap
        row_height = max(row_height, outer)
    return image, truth


def iou(a, b):
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / float(union) if union else 0.0


def match(truth_boxes, found_boxes, threshold=0.3):
    """Greedy one-to-one matching by IoU.

    Returns:
        {truth index: found index} for pairs with IoU > threshold.
    """
    pairs = sorted(
        (
            (iou(t, f), i, j)
            for i, t in enumerate(truth_boxes)
            for j, f in enumerate(found_boxes)
        ),
        reverse=True,
    )
    out, used = {}, set()
    for score, i, j in pairs:
        if score <= threshold:
            break
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out
