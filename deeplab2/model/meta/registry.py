"""The open registry of meta-architectures (model families), by name.

Built-in families are imported on first lookup; a user's family registers
itself with `register_meta_architecture` when its module is imported.
"""
import importlib
from typing import Dict, Tuple

from deeplab2.model.meta.architecture import MetaArchitecture

_REGISTRY: Dict[str, MetaArchitecture] = {}
# Modules whose import registers a built-in family.
_BUILT_IN = {
    "panoptic_deeplab": "deeplab2.model.panoptic_deeplab",
    "panoptic_fpn": "deeplab2.model.panoptic_fpn",
    "upsnet": "deeplab2.model.upsnet",
    "seamless": "deeplab2.model.seamless",
}


def register_meta_architecture(family: MetaArchitecture) -> MetaArchitecture:
    """Registers a family under `family.name`; returns it (usable on an instance
    at module level). Registering another family under a taken name is an error."""
    if not isinstance(family, MetaArchitecture):
        raise TypeError(f"register_meta_architecture takes a MetaArchitecture instance, "
                        f"got {family!r}.")
    if not family.name:
        raise ValueError(f"{type(family).__name__} has no name.")
    registered = _REGISTRY.get(family.name)
    if registered is not None and type(registered) is not type(family):
        raise ValueError(f"meta-architecture {family.name!r} is already registered "
                         f"({type(registered).__name__}).")
    _REGISTRY[family.name] = family
    return family


def get_meta_architecture(name: str) -> MetaArchitecture:
    """The family registered under `name`; a clear error lists the known names."""
    if name not in _REGISTRY and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown meta_architecture {name!r}; registered: "
                         f"{', '.join(meta_architecture_names())}.")
    return _REGISTRY[name]


def meta_architecture_names() -> Tuple[str, ...]:
    """Registered and built-in family names, sorted."""
    return tuple(sorted(set(_REGISTRY) | set(_BUILT_IN)))
