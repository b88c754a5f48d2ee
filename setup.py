"""Install fsr_fer_tf.

TensorFlow comes in several distributions with the same API (``tensorflow``,
``tensorflow-cpu``, ...). Requiring one by name would install a second copy
beside the one a user already has, so the requirement is chosen here:

1. ``FSR_FER_TF_TENSORFLOW=<distribution>`` in the environment wins;
2. otherwise an already installed TensorFlow distribution is kept;
3. otherwise ``tensorflow`` where an NVIDIA driver is visible or no CPU-only
   wheel exists, and ``tensorflow-cpu`` on Linux/Windows x86-64 machines
   without a GPU (a third of the download).

The ``gpu`` extra adds ``tensorflow[and-cuda]`` (CUDA libraries from PyPI).
"""

import os
import platform
import shutil
import subprocess
import sys

import setuptools

MIN_TF = "2.16"
TF_DISTRIBUTIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-intel",
    "tensorflow-macos",
    "tf-nightly",
    "tf-nightly-cpu",
)

_FIND_INSTALLED = """
import importlib.metadata as m
for d in {dists!r}:
    try:
        m.version(d)
    except m.PackageNotFoundError:
        continue
    print(d)
    break
"""


def _installed_tensorflow():
    """Returns the TensorFlow distribution installed in the target env."""
    # pip builds in an isolated environment whose sitecustomize hides the
    # target's site-packages; a child interpreter without PYTHONPATH sees them.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")
    }
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _FIND_INSTALLED.format(dists=TF_DISTRIBUTIONS),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = out.stdout.strip()
    return name or None


def _tensorflow_requirement():
    name = os.environ.get("FSR_FER_TF_TENSORFLOW") or _installed_tensorflow()
    if not name:
        machine = platform.machine().lower()
        cpu_wheel = sys.platform in ("linux", "win32") and machine in (
            "x86_64",
            "amd64",
        )
        has_gpu = shutil.which("nvidia-smi") is not None
        name = "tensorflow-cpu" if cpu_wheel and not has_gpu else "tensorflow"
    return f"{name}>={MIN_TF}"


with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setuptools.setup(
    name="fsr_fer_tf",
    version="0.1.0",
    description=(
        "Feature super-resolution for facial expression recognition on "
        "low-resolution faces (FSR-FER), in TensorFlow 2 / Keras 3."
    ),
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["fsr_fer_tf", "fsr_fer_tf.*"]),
    install_requires=[
        _tensorflow_requirement(),
        "keras>=3.0",
        "numpy",
        # opencv 5 wheels dropped cv2.CascadeClassifier and the Haar cascades.
        "opencv-python-headless<5",
        "absl-py",
        "matplotlib",
        "pyyaml",
        "tensorboard",  # tf.summary needs it; TF 2.21 no longer depends on it
    ],
    extras_require={
        "dev": [
            "pytest",
            # setup.cfg runs the suite on 2 processes (-n 2 --dist loadfile).
            "pytest-xdist",
            "nbclient",
            "nbformat",
            "ipykernel",
        ],
        "gpu": [f"tensorflow[and-cuda]>={MIN_TF}"],
        # Optional face detector for fsr-fer-predict (weights in its wheel).
        "mtcnn": ["mtcnn"],
    },
    entry_points={
        "console_scripts": [
            "fsr-fer-inspect=fsr_fer_tf.data.inspect:run",
            "fsr-fer-train-fer=fsr_fer_tf.train_fer:run",
            "fsr-fer-train-fsr=fsr_fer_tf.train_fsr:run",
            "fsr-fer-train-isr=fsr_fer_tf.train_isr:run",
            "fsr-fer-evaluate=fsr_fer_tf.evaluate:run",
            "fsr-fer-demo=fsr_fer_tf.demo:run",
            "fsr-fer-predict=fsr_fer_tf.predict:run",
        ],
    },
)
