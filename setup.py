"""Installs the deeplab2 package with exactly one TensorFlow distribution.

    pip install -e ".[cpu]"         # tensorflow-cpu (add ",test" for the test suite,
                                    # ",export" for TFLite and ONNX export)
    pip install -e ".[gpu]"         # tensorflow[and-cuda], for NVIDIA GPUs
    pip install -e .                # bring your own TensorFlow 2.21 (e.g. on a TPU VM)

The Gin configs ship inside the package (deeplab2/configs).
"""
import setuptools

TENSORFLOW_VERSION = "2.21.0"
# TFLite (run with LiteRT) and ONNX (converted by tf2onnx, run with ONNX Runtime) export.
EXPORT_REQUIRES = ["ai-edge-litert==2.3.0", "tf2onnx==1.17.0", "onnx==1.23.2",
                   "onnxruntime==1.32.0"]

setuptools.setup(
    name="deeplab2",
    version="0.2.0",
    description="Panoptic segmentation (Panoptic-DeepLab and its backbones) in "
                "TensorFlow 2 / Keras 3.",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["deeplab2", "deeplab2.*"]),
    package_data={"deeplab2": ["configs/*/*.gin"]},
    install_requires=[
        "absl-py==2.5.1",
        "gin-config==0.5.0",
        "numpy>=1.26,<3",
        "pillow==13.0.0",
        "pycocotools==2.0.11",
        f"tensorboard=={TENSORFLOW_VERSION}",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TENSORFLOW_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]=={TENSORFLOW_VERSION}"],
        "export": EXPORT_REQUIRES,
        # cityscapesscripts: the official Cityscapes evaluations the tests compare with.
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "hotcoco==1.3.0",
                 "cityscapesscripts==2.3.0", *EXPORT_REQUIRES],
    },
    entry_points={
        "console_scripts": [
            "deeplab2-quickstart=deeplab2.quickstart:run",
            "deeplab2-trainer=deeplab2.training.main:run",
        ],
    },
)
