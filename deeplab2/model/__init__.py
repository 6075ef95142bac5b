"""Models: the meta-architecture registry and `build_model`, model directories
(`load_model`), backbones, layers, and one package per model family."""
from deeplab2.model.builder import build_model, model_from_config
from deeplab2.model.meta import (ModelConfig, get_meta_architecture,
                                 meta_architecture_names, register_meta_architecture)
from deeplab2.model.model_dir import load_model
