"""google-research/deeplab2 checkpoints of Panoptic-DeepLab, mapped onto our model.

deeplab2 saves `tf.train.Checkpoint(global_step=..., encoder=..., semantic_decoder=...,
semantic_head_without_last_layer=..., semantic_last_layer=..., instance_decoder=...,
instance_center_head_{without_,}last_layer=..., instance_regression_head_{...}=...)`
(training checkpoints add `optimizer/...`). Its keys follow its Python attribute
names, so they cannot be produced by our object graph; `deeplab2_variables(model)`
instead walks our model structurally (layer classes, not names of variables) and
gives each variable the key deeplab2 stores it under. Kernel layouts are the same
in both (HWIO convolutions, HWC1 depthwise), so values copy as they are.

A model built with deeplab2's architecture options (see `configs/deeplab2/`) maps
one to one; `load_deeplab2_checkpoint` refuses any other, listing what differs.
"""
import re
from typing import Dict, Optional, Sequence

import keras

from deeplab2.model import checkpoints
from deeplab2.model.backbones.mobilenet_v3 import InvertedResidual, MobileNetV3
from deeplab2.model.backbones.resnet import Bottleneck, ResNet
from deeplab2.model.backbones.wide_resnet import (BasicBlock, SACBNAct, SWideRNet,
                                                  WideBottleneck)
from deeplab2.model.layers.convolutions import (ConvBNAct, DepthwiseConvBNAct,
                                                SeparableConvBNAct)

ENCODER = "encoder"
# Our head attribute -> deeplab2's (body, last layer) checkpoint items.
_HEADS = {
    "semantic_head": ("semantic_head_without_last_layer", "semantic_last_layer"),
    "center_head": ("instance_center_head_without_last_layer",
                    "instance_center_head_last_layer"),
    "offset_head": ("instance_regression_head_without_last_layer",
                    "instance_regression_head_last_layer"),
}
_BN = ("gamma", "beta", "moving_mean", "moving_variance")
_BLOCK_NAME = re.compile(r"conv(\d+)_block(\d+)$")


class UnsupportedLayerError(TypeError):
    """A layer of our model with no deeplab2 counterpart."""


def _batch_norm(bn, prefix: str) -> Dict[str, keras.Variable]:
    return {f"{prefix}/_batch_norm/{name}": getattr(bn, name) for name in _BN}


def _conv2d(conv, prefix: str) -> Dict[str, keras.Variable]:
    out = {f"{prefix}/kernel": conv.kernel}
    if conv.use_bias:
        out[f"{prefix}/bias"] = conv.bias
    return out


def layer_variables(layer, prefix: str) -> Dict[str, keras.Variable]:
    """{deeplab2 key (no suffix): variable} of one of our convolution layers."""
    if isinstance(layer, SeparableConvBNAct):
        return {**layer_variables(layer.depthwise, f"{prefix}/_depthwise"),
                **layer_variables(layer.pointwise, f"{prefix}/_pointwise")}
    if isinstance(layer, DepthwiseConvBNAct):
        return {f"{prefix}/_depthwise_conv/depthwise_kernel": layer.conv.kernel,
                **_batch_norm(layer.bn, prefix)}
    if isinstance(layer, ConvBNAct):
        return {**_conv2d(layer.conv, f"{prefix}/_conv"), **_batch_norm(layer.bn, prefix)}
    if isinstance(layer, SACBNAct):
        conv = layer.conv
        out = {f"{prefix}/_conv/kernel": conv.kernel,
               **_conv2d(conv.switch, f"{prefix}/_conv/_switch"),
               **_batch_norm(layer.bn, prefix)}
        if conv.use_global_context:
            out.update(_conv2d(conv.pre_context.conv,
                               f"{prefix}/_pre_global_context/convolution"))
            out.update(_conv2d(conv.post_context.conv,
                               f"{prefix}/_post_global_context/convolution"))
        return out
    if isinstance(layer, keras.layers.Conv2D):
        return _conv2d(layer, prefix)
    raise UnsupportedLayerError(
        f"layer {layer.name} ({type(layer).__name__}) has no deeplab2 counterpart")


def _stage_layers(backbone):
    return [layer for layers, _ in backbone.stages for layer in layers]


def _mobilenet(backbone: MobileNetV3) -> Dict[str, keras.Variable]:
    out = {}
    for index, layer in enumerate(_stage_layers(backbone)):
        prefix = f"{ENCODER}/_blocks/{index}"
        if not isinstance(layer, InvertedResidual):
            out.update(layer_variables(layer, prefix))
            continue
        if layer.expand_conv is not None:
            out.update(layer_variables(layer.expand_conv, f"{prefix}/_conv1_bn_act"))
        out.update(layer_variables(layer.depthwise, f"{prefix}/_conv2_bn_act"))
        if layer.se is not None:
            out.update(_conv2d(layer.se.reduce, f"{prefix}/_squeeze_excitation/_se_reduce"))
            out.update(_conv2d(layer.se.expand, f"{prefix}/_squeeze_excitation/_se_expand"))
        out.update(layer_variables(layer.project, f"{prefix}/_conv3_bn"))
    return out


def _block_prefix(layer, stage_offset: int) -> str:
    match = _BLOCK_NAME.match(layer.name)
    if match is None:
        raise UnsupportedLayerError(f"unexpected block name {layer.name!r}")
    stage, block = int(match.group(1)) + stage_offset, int(match.group(2))
    return f"{ENCODER}/_stage{stage}/_block{block}"


def _residual(layer, prefix: str, names: Sequence[str]) -> Dict[str, keras.Variable]:
    out = {}
    for attribute, name in zip(("conv1", "conv2", "conv3"), names):
        out.update(layer_variables(getattr(layer, attribute), f"{prefix}/{name}"))
    if layer.shortcut is not None:
        out.update(layer_variables(layer.shortcut, f"{prefix}/_shortcut"))
    if getattr(layer, "se", None) is not None:
        out.update(_conv2d(layer.se.expand, f"{prefix}/_squeeze_and_excite/_se_conv"))
    return out


def _resnet(backbone: ResNet) -> Dict[str, keras.Variable]:
    out = {}
    stem = {"conv1": "_stem", "conv1_1": "_stem/_conv1_bn_act",
            "conv1_2": "_stem/_conv2_bn_act", "conv1_3": "_stem/_conv3_bn"}
    for layer in _stage_layers(backbone):
        if isinstance(layer, Bottleneck):
            out.update(_residual(layer, _block_prefix(layer, 0),
                                 ("_conv1_bn_act", "_conv2_bn_act", "_conv3_bn")))
        elif isinstance(layer, ConvBNAct):
            out.update(layer_variables(layer, f"{ENCODER}/{stem[layer.name]}"))
    return out


def _swidernet(backbone: SWideRNet) -> Dict[str, keras.Variable]:
    out = {}
    for layer in _stage_layers(backbone):
        if isinstance(layer, BasicBlock):
            out.update(_residual(layer, _block_prefix(layer, -1),
                                 ("_conv1_bn_act", "_conv2_bn")))
        elif isinstance(layer, WideBottleneck):
            out.update(_residual(layer, _block_prefix(layer, -1),
                                 ("_conv1_bn_act", "_conv2_bn_act", "_conv3_bn")))
        elif isinstance(layer, ConvBNAct):
            out.update(layer_variables(layer, f"{ENCODER}/_stem"))
    return out


def encoder_variables(backbone) -> Dict[str, keras.Variable]:
    """{deeplab2 key: variable} of a backbone (deeplab2's `encoder`)."""
    for kind, walk in ((MobileNetV3, _mobilenet), (ResNet, _resnet),
                       (SWideRNet, _swidernet)):
        if isinstance(backbone, kind):
            return walk(backbone)
    raise UnsupportedLayerError(
        f"backbone {backbone.name} ({type(backbone).__name__}) has no deeplab2 "
        f"counterpart; deeplab2 checkpoints exist for MobileNetV3, ResNet and "
        f"(S)WideRNet backbones")


def _aspp(aspp, prefix: str) -> Dict[str, keras.Variable]:
    out = layer_variables(aspp.conv1x1, f"{prefix}/_conv_bn_act")
    for index, conv in enumerate(aspp.atrous_convs):
        out.update(layer_variables(conv, f"{prefix}/_aspp_conv{index + 1}/_conv_bn_act"))
    out.update(layer_variables(aspp.pooling.conv, f"{prefix}/_aspp_pool/_conv_bn_act"))
    out.update(layer_variables(aspp.projection, f"{prefix}/_proj_conv_bn_act"))
    return out


def _decoder(decoder, prefix: str) -> Dict[str, keras.Variable]:
    out = {}
    for index, (projection, convs) in enumerate(zip(decoder.projections, decoder.fusions)):
        out.update(layer_variables(projection, f"{prefix}/_low_level_conv{index + 1}"))
        for number, conv in enumerate(convs):
            out.update(layer_variables(
                conv, f"{prefix}/_fusion_conv{index + 1}/_conv{number + 1}_bn_act"))
    return out


def deeplab2_variables(model, encoder_only: bool = False) -> Dict[str, keras.Variable]:
    """{deeplab2 checkpoint key: variable} of a Panoptic-DeepLab model.

    `encoder_only` maps the backbone alone (deeplab2's ImageNet checkpoints).
    """
    out = encoder_variables(model.backbone)
    if not encoder_only:
        for branch in ("semantic", "instance"):
            aspp = getattr(model, f"{branch}_aspp")
            decoder = getattr(model, f"{branch}_decoder")
            if aspp is not None:
                out.update(_aspp(aspp, f"{branch}_decoder/_aspp"))
            if decoder is not None:
                out.update(_decoder(decoder, f"{branch}_decoder"))
        for attribute, (body, last) in _HEADS.items():
            head = getattr(model, attribute)
            if head is not None:
                out.update(layer_variables(head.conv, f"{body}/_conv1_bn_act"))
                out.update(_conv2d(head.classifier, last))
    return {key + checkpoints.SUFFIX: variable for key, variable in out.items()}


def is_deeplab2_checkpoint(keys: Sequence[str]) -> bool:
    """Whether checkpoint keys look like deeplab2's (an `encoder` item)."""
    return any(key.startswith(ENCODER + "/") for key in keys)


def foreign_format(model, keys: Sequence[str]) -> Optional[Dict[str, keras.Variable]]:
    """`checkpoints.ForeignFormat` for deeplab2 checkpoints: the whole model when
    the checkpoint has a decoder, else the encoder (ImageNet checkpoints)."""
    if not is_deeplab2_checkpoint(keys):
        return None
    has_decoder = any(not key.startswith(ENCODER + "/") for key in keys)
    return deeplab2_variables(model, encoder_only=not has_decoder)


def load_deeplab2_checkpoint(model, path: str,
                             encoder_only: Optional[bool] = None) -> checkpoints.LoadReport:
    """Loads a deeplab2 checkpoint into `model`, every variable or nothing.

    Args:
        path: checkpoint prefix or folder (its latest checkpoint).
        encoder_only: load the backbone only; default: when the checkpoint
            holds nothing but the encoder (deeplab2's ImageNet checkpoints).

    Raises:
        checkpoints.CheckpointError listing unmatched keys and shapes when the
        checkpoint is not deeplab2's, or not of this architecture or class count.
    """
    path, reader = checkpoints.open_checkpoint(path)
    keys = checkpoints.weight_paths(reader, path)
    if not is_deeplab2_checkpoint(keys):
        sample = ", ".join(sorted(checkpoints.strip(k) for k in keys)[:5])
        raise checkpoints.CheckpointError(
            f"{path} is not a deeplab2 checkpoint (no 'encoder/' entries; found e.g. "
            f"{sample}).")
    if encoder_only is None:
        encoder_only = all(key.startswith(ENCODER + "/") for key in keys)
    variables = deeplab2_variables(model, encoder_only=encoder_only)
    not_encoder = (lambda key: not key.startswith(ENCODER + "/")) if encoder_only else False
    return checkpoints.load_variables(variables, path, reader=reader,
                                      allow_unused=not_encoder)


def checkpoint_num_classes(path: str) -> Optional[int]:
    """Classes a deeplab2 checkpoint predicts (its semantic last layer), or None
    for an encoder-only checkpoint."""
    path, reader = checkpoints.open_checkpoint(path)
    key = "semantic_last_layer/kernel" + checkpoints.SUFFIX
    key = checkpoints.stored_keys(reader, path).get(key, key)
    shapes = reader.get_variable_to_shape_map()
    return int(shapes[key][-1]) if key in shapes else None
