r"""Writes a recognizer model directory (what checkpoints/fer2013 ships).

    python tools/export_models.py \
        --fer_model=checkpoints/runs/fer_hr/final.keras \
        --generator=checkpoints/ablation_recipes/ms_ce/generator.keras \
        --fsr_backbone=checkpoints/runs/fer_ms/final.keras \
        --threshold=4 --out_dir=checkpoints/fer2013

Copies, into `--out_dir`:

- fer.keras: the stage-1 CovPoolFER of the HR route;
- fer_fsr.keras: the CovPoolFER whose features G super-resolves, when it
  is not fer.keras (e.g. one trained on LR faces too);
- generator.keras: the stage-2 generator G;
- fsr_fer.keras: raw 100x100 pixels in, logits out, through G (the FSR
  route as one model, `models.fsr_fer.build_fsr_fer`);
- recognizer.json: the files and the routing threshold, for
  `fsr_fer_tf.Recognizer.from_dir` and `fsr-fer-predict`.

Stage-1 models get `--preset` and the face colour of their training data
in their metadata when they have none (exports older than the metadata
field); nothing else about the models is changed. The model card
(MODEL_CARD.md) is written by hand beside them, with the commands and the
validation table that produced them.
"""

import functools
import os

from absl import app
from absl import flags


@functools.cache
def define_flags():
    """Defines the flags (by `run`; importing this file defines none)."""
    flags.DEFINE_string(
        "fer_model", None, "Stage-1 CovPoolFER of the HR route (.keras)."
    )
    flags.DEFINE_string("generator", None, "Stage-2 generator.")
    flags.DEFINE_string(
        "fsr_backbone",
        None,
        "The CovPoolFER G was trained on, if not --fer_model.",
    )
    flags.DEFINE_float(
        "threshold",
        None,
        "Faces of effective scale >= this take the FSR route (choose it on "
        "val: tools/ablation_recipes.py's routed rows).",
    )
    flags.DEFINE_list(
        "trained_scales",
        ["2", "3", "4", "5", "6", "7", "8"],
        "Scales G was trained on.",
    )
    flags.DEFINE_enum(
        "above",
        "fsr",
        ["fsr", "lr"],
        "Route of the faces from --threshold on: 'fsr' (G on the backbone's "
        "feature) or 'lr' (--fsr_backbone alone, without G; when G did not "
        "beat it on val).",
    )
    flags.DEFINE_integer(
        "face_size",
        48,
        "Side in pixels of the training faces before their resize to the "
        "model input (FER-2013: 48; RAF-DB aligned: 100). The recognizer's "
        "effective scale of a face of side w is face_size / w, so that a "
        "face as large as the training faces is x1.",
    )
    flags.DEFINE_string(
        "preset", "fer2013", "Preset recorded in stage-1 models without one."
    )
    flags.DEFINE_enum(
        "colour",
        "grey",
        ["grey", "rgb"],
        "Face colour recorded in stage-1 models without one (FER-2013: grey).",
    )
    flags.DEFINE_string(
        "out_dir", "checkpoints/fer2013", "The model directory to write."
    )


def main(argv):
    from fsr_fer_tf import errors
    from fsr_fer_tf import recognizer

    FLAGS = flags.FLAGS
    del argv
    errors.require(bool(FLAGS.fer_model), "--fer_model is required.")
    errors.require(bool(FLAGS.generator), "--generator is required.")
    spec = recognizer.write_bundle(
        FLAGS.fer_model,
        FLAGS.generator,
        FLAGS.out_dir,
        FLAGS.threshold,
        FLAGS.fsr_backbone,
        [int(s) for s in FLAGS.trained_scales],
        FLAGS.preset,
        FLAGS.colour,
        FLAGS.face_size,
        FLAGS.above,
    )
    sizes = {
        name: os.path.getsize(os.path.join(FLAGS.out_dir, name))
        for name in sorted(os.listdir(FLAGS.out_dir))
        if name.endswith(".keras")
    }
    for name, size in sizes.items():
        print(f"{os.path.join(FLAGS.out_dir, name)}  {size / 1e6:.1f} MB")
    print(f"total {sum(sizes.values()) / 1e6:.1f} MB; recognizer.json: {spec}")


def run():
    from fsr_fer_tf import errors

    define_flags()
    app.run(errors.cli_main(main))


if __name__ == "__main__":
    run()
