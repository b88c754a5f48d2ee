"""fsr_fer_tf: feature super-resolution for facial expression recognition.

A TensorFlow 2 / Keras 3 reproduction of FSR-FER (Jing et al., 2020). Importing
the package is cheap; TensorFlow is imported by the sub-modules that need it.
"""

__version__ = "0.1.0"
