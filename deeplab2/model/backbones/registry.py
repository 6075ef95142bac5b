"""Backbones by name: `get_backbone(name, ...)` and `backbone_names()`;
`register_backbone` adds a network of one's own.

Names: resnet50, resnet101, resnet50_beta; mobilenet_v3_small,
mobilenet_v3_large (last block halved); xception65, xception71;
wide_resnet41 (Table 3 baseline), wide_resnet41_sac (+ SAC in conv6);
swidernet_<w1>_<w2>_<l> for the variants of paper 004 (SE + SAC in conv6;
swidernet_sac_1_1_1 is deeplab2's name for swidernet_1_1_1) and "swidernet"
with explicit `width1`, `width2`, `depth`.
"""
import keras

from deeplab2.model.backbones import mobilenet_v3
from deeplab2.model.backbones import pretrained
from deeplab2.model.backbones import resnet
from deeplab2.model.backbones import wide_resnet
from deeplab2.model.backbones import xception

# SWideRNet-(w1, w2, l) variants of paper 004 (Tables 4, 5 and 8-12).
SWIDERNET_VARIANTS = (
    (0.25, 0.25, 0.75), (0.25, 0.35, 0.75), (0.25, 0.35, 1),
    (0.25, 0.5, 1), (0.25, 0.75, 1),
    (1, 1, 1), (1, 1.5, 1), (1, 2, 1),
    (1, 1, 2), (1, 1, 3), (1, 1, 4), (1, 1, 4.5), (1, 1, 5), (1, 1, 5.5),
    (1, 1, 6), (1, 1.5, 2), (1, 1.5, 3),
)

# name -> (constructor, fixed arguments, family)
_REGISTRY = {
    "resnet50": (resnet.ResNet, dict(depth=50), "resnet"),
    "resnet101": (resnet.ResNet, dict(depth=101), "resnet"),
    "resnet50_beta": (resnet.ResNet, dict(depth=50, stem="inception"),
                      "resnet"),
    "mobilenet_v3_small": (mobilenet_v3.MobileNetV3, dict(variant="small"),
                           "mobilenet_v3"),
    "mobilenet_v3_large": (mobilenet_v3.MobileNetV3, dict(variant="large"),
                           "mobilenet_v3"),
    "xception65": (xception.Xception, dict(depth=65), "xception"),
    "xception71": (xception.Xception, dict(depth=71), "xception"),
    "wide_resnet41": (wide_resnet.SWideRNet,
                      dict(use_se=False, sac_stages=()), "swidernet"),
    "wide_resnet41_sac": (wide_resnet.SWideRNet, dict(use_se=False),
                          "swidernet"),
    "swidernet": (wide_resnet.SWideRNet, {}, "swidernet"),
    "swidernet_sac_1_1_1": (wide_resnet.SWideRNet, {}, "swidernet"),
}
for _w1, _w2, _l in SWIDERNET_VARIANTS:
    _REGISTRY[f"swidernet_{_w1:g}_{_w2:g}_{_l:g}"] = (
        wide_resnet.SWideRNet, dict(width1=_w1, width2=_w2, depth=_l),
        "swidernet")

_MULTI_GRID = ("resnet", "xception", "swidernet")
_DROP_PATH = ("resnet", "swidernet")
# Families whose activation is an argument (Seamless's LeakyReLU).
_ACTIVATION = ("resnet",)


def register_backbone(name, constructor, fixed=None, family=None):
    """Makes `name` a backbone every model family can use (a user's own network).

    `constructor(output_stride=..., name=..., **fixed, **kwargs)` must return a
    `deeplab2.model.backbones.base.Backbone`; `family` (default: `name`)
    groups backbones for the options only some families take (multi_grid,
    drop path).
    """
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is already registered")
    _REGISTRY[name] = (constructor, dict(fixed or {}), family or name)


def backbone_names():
    """All registered backbone names, sorted."""
    return sorted(_REGISTRY)


def takes_activation(name):
    """Whether backbone `name` takes an `activation` (the ResNets)."""
    return name in _REGISTRY and _REGISTRY[name][2] in _ACTIVATION


def get_backbone(name, output_stride=32, multi_grid=None,
                 drop_path_survival_rate=1.0, drop_path_schedule="constant",
                 weights=None, bn_epsilon=None, activation=None, **kwargs):
    """Builds the backbone `name`.

    Args:
        name: one of `backbone_names()`.
        output_stride: 8, 16 or 32.
        multi_grid: atrous rate multipliers of the last block's units
            (ResNet, Xception, SWideRNet), e.g. (1, 2, 4).
        drop_path_survival_rate: survival rate of the residual branches of
            the last stage; 1.0 disables drop path (ResNet, SWideRNet).
        drop_path_schedule: "constant" or "linear".
        weights: None or "imagenet" (keras.applications weights, for
            resnet50, resnet101 and mobilenet_v3_*; downloads them).
        bn_epsilon: epsilon of every batch norm (default: each layer's own,
            1e-3); set before pretrained weights load, whose moving variances
            are adjusted to it.
        activation: the backbone's activation instead of its own, e.g.
            "leaky_relu" (ResNets, `takes_activation`).
        **kwargs: further constructor arguments (e.g. `halve_last_block`,
            `use_se`, `sac_stages`, `width1`); they override the name's.

    Returns:
        A built `deeplab2.model.backbones.base.Backbone` (a keras Model)
        mapping a normalized image to {"res2", "res3", "res4", "res5",
        "final"}; `.feature_channels` gives their channels.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known backbones: "
                         f"{', '.join(backbone_names())}")
    if weights not in (None, "imagenet"):
        raise ValueError(
            f"weights must be None or 'imagenet', got {weights!r}")
    if weights == "imagenet" and name not in pretrained.KERAS_APPLICATIONS:
        raise ValueError(f"no ImageNet weights for {name}; available for "
                         f"{', '.join(pretrained.KERAS_APPLICATIONS)}")
    constructor, fixed, family = _REGISTRY[name]
    arguments = dict(fixed, output_stride=output_stride, name=name)
    if multi_grid is not None:
        if family not in _MULTI_GRID:
            raise ValueError(f"{name} does not support multi_grid")
        arguments["multi_grid"] = multi_grid
    if drop_path_survival_rate != 1.0:
        if family not in _DROP_PATH:
            raise ValueError(f"{name} does not support drop path")
        arguments.update(drop_path_survival_rate=drop_path_survival_rate,
                         drop_path_schedule=drop_path_schedule)
    if activation is not None:
        if family not in _ACTIVATION:
            raise ValueError(f"{name} does not take an activation (only "
                             f"{', '.join(n for n in _REGISTRY if takes_activation(n))})")
        arguments["activation"] = activation
    arguments.update(kwargs)
    backbone = constructor(**arguments)
    backbone.build((None, None, None, 3))
    if bn_epsilon is not None:
        for layer in backbone._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.epsilon = float(bn_epsilon)
    if weights == "imagenet":
        pretrained.load_imagenet_weights(backbone, name)
    return backbone
