"""Installs the deeplab2 package: `pip install -e .` (add `[test]` for the test suite).

TensorFlow: `tensorflow-cpu` by default. For GPUs install with
`DEEPLAB2_TENSORFLOW="tensorflow[and-cuda]==2.21.0" pip install -e .`
(or `pip install -e .[gpu]`, which adds the CUDA build beside the CPU one).
"""
import os

import setuptools

TENSORFLOW = os.environ.get("DEEPLAB2_TENSORFLOW", "tensorflow-cpu==2.21.0")

setuptools.setup(
    name="deeplab2",
    version="0.1.0",
    description="Panoptic-DeepLab and its backbones in TensorFlow 2 / Keras 3.",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["deeplab2", "deeplab2.*"]),
    install_requires=[
        TENSORFLOW,
        "absl-py==2.5.1",
        "gin-config==0.5.0",
        "numpy>=1.26,<3",
        "pillow==13.0.0",
        "pycocotools==2.0.11",
        "tensorboard==2.21.0",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        "test": ["pytest==9.2.0", "hotcoco==1.3.0"],
    },
    entry_points={
        "console_scripts": [
            "deeplab2-quickstart=deeplab2.quickstart:run",
            "deeplab2-trainer=deeplab2.training.main:run",
        ],
    },
)
