"""fsr_fer_tf: feature super-resolution for facial expression recognition.

A TensorFlow 2 / Keras 3 reproduction of FSR-FER (Jing et al., 2020).
Importing the package registers its Keras layers and models, so the `.keras`
files the training scripts export load with only this import:

    import keras
    import fsr_fer_tf  # noqa: F401  (registers the custom layers)
    model = keras.models.load_model("checkpoints/demo/fsr/fsr_fer.keras")
"""

__version__ = "0.1.0"

from fsr_fer_tf import startup  # noqa: E402

if startup.onednn_default():
    # oneDNN's CPU kernels: 1.4x-3.5x faster steps here (see startup.py).
    startup.os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
if startup.should_quiet():
    # TensorFlow's start-up notices would bury an entry point's one
    # `error:` line (see startup.py). Set TF_CPP_MIN_LOG_LEVEL yourself to
    # keep TensorFlow's own logging.
    startup.os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with startup.notices_hidden():
        import tensorflow  # noqa: E402,F401

from fsr_fer_tf import labels  # noqa: E402,F401  (CLASS_NAMES)
from fsr_fer_tf import layers  # noqa: E402,F401  (registration)
from fsr_fer_tf import models  # noqa: E402,F401  (registration)
from fsr_fer_tf.recognizer import Recognizer  # noqa: E402,F401
