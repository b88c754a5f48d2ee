"""fsr_fer_tf: feature super-resolution for facial expression recognition.

A TensorFlow 2 / Keras 3 reproduction of FSR-FER (Jing et al., 2020).
Importing the package registers its Keras layers and models, so the `.keras`
files the training scripts export load with only this import:

    import keras
    import fsr_fer_tf  # noqa: F401  (registers the custom layers)
    model = keras.models.load_model("checkpoints/demo/fsr/fsr_fer.keras")
"""

import os
import sys

__version__ = "0.1.0"

# TensorFlow's C++ log lines (start-up notices on oneDNN and CPU features,
# whose appearance depends on the machine; a warning per failed op, e.g. each
# corrupt image the readers skip and report themselves) would bury the one
# `error:` line of an entry point. Show only C++ errors unless the user chose
# a level (TF_CPP_MIN_LOG_LEVEL=0 shows everything). Too late, and so not
# touched, when TensorFlow was imported first.
if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fsr_fer_tf import labels  # noqa: E402,F401  (CLASS_NAMES)
from fsr_fer_tf import layers  # noqa: E402,F401  (registration)
from fsr_fer_tf import models  # noqa: E402,F401  (registration)
