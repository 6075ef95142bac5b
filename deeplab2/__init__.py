"""deeplab2: panoptic segmentation in TensorFlow 2 / Keras 3.

    model = deeplab2.load_model("runs/quickstart/model")

`load_model` and `build_model` are imported on first use, so that importing a
light part of the package (e.g. a dataset descriptor) does not import TensorFlow.
"""
import importlib
import importlib.util
import os

from deeplab2.utils import quiet_tensorflow

__version__ = "0.2.0"

# Quiet by default: no TensorFlow C++ INFO or WARNING lines (set
# TF_CPP_MIN_LOG_LEVEL=0, or pass --verbosity to a command, to see them); its
# graph optimizer warns, for instance, once per RoIAlign of unknown box count.
# Effective when deeplab2 is imported before TensorFlow; so is hiding the lines
# TensorFlow's libraries print while loading (`utils.quiet_tensorflow`).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet_tensorflow.install()

if importlib.util.find_spec("tensorflow") is None:
    raise ImportError("deeplab2 needs TensorFlow 2.21: install it with the package, "
                      "pip install 'deeplab2[cpu]' (or '[gpu]' for NVIDIA GPUs).")

_PUBLIC = {"load_model": "deeplab2.model.model_dir", "build_model": "deeplab2.model.builder"}


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'deeplab2' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
