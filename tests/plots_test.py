"""Tests for fsr_fer_tf.plots: figure layout measured in display pixels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fsr_fer_tf import plots  # noqa: E402


@pytest.mark.parametrize("lines, title", [(1, ""), (3, "a title"), (5, "")])
def test_face_grid_captions_never_touch_other_faces(lines, title):
    n, ncols = 12, 4
    images = np.random.default_rng(0).uniform(0, 255, (n, 100, 100, 3))
    captions = ["\n".join(f"line {j} of face {i}" for j in range(lines))
                for i in range(n)]  # fmt: skip
    fig = plots.face_grid(images, captions, ncols=ncols, title=title)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = np.asarray(fig.axes).reshape(-1, ncols)
    fig_box = fig.bbox
    for r in range(axes.shape[0]):
        for c in range(ncols):
            ax = axes[r, c]
            face = ax.images[0].get_window_extent(renderer)
            text = ax.title.get_window_extent(renderer)
            assert text.y0 >= face.y1 - 0.5  # above its own face
            assert text.y1 <= fig_box.y1 + 0.5  # inside the figure
            if r > 0:  # below the face of the row above
                above = axes[r - 1, c].images[0].get_window_extent(renderer)
                assert text.y1 <= above.y0 + 0.5, (r, c, text, above)
            if title:
                top = fig._suptitle.get_window_extent(renderer)
                assert text.y1 <= top.y0 + 0.5
    png = plots.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
