"""Parameter and multiply-add counting without running the model.

Multiply-adds are read from the TensorFlow graph of one traced forward pass
(inference mode, batch 1): no tensor is computed. One multiply-add is counted
per multiply-accumulate of a convolution or matrix product:

- Conv2D: H_out * W_out * K_h * K_w * C_in / groups * C_out;
- DepthwiseConv2dNative: H_out * W_out * K_h * K_w * C * multiplier;
- MatMul / BatchMatMul: output elements * inner dimension.

A deformable convolution samples its input, then multiplies the samples by
its kernel in matrix products: it counts as the k x k convolution it
generalizes.

Batch norm (folded into the convolutions at inference), activations,
pooling, resizing, additions and padding are not counted, as in the papers'
tables. Atrous convolutions are counted the way
TensorFlow executes them (and the papers' TF graphs counted them): through
space-to-batch, i.e. on a grid of `rate * ceil(H_out / rate)` by
`rate * ceil(W_out / rate)` positions, slightly more than H_out * W_out.

`profile_builder` builds the model inside a `keras.StatelessScope` whose
variables are never initialized: no weight is allocated, so full-size models
(even SWideRNet-(1, 1.5, 3), 947 M parameters) are cheap to count.
"""
import math
from typing import Optional

import keras
import tensorflow as tf
from keras.src.backend.common import global_state

from deeplab2.data.dataset_info import DatasetInfo, dataset_names, resolve_dataset
from deeplab2.model.builder import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD, model_from_config
from deeplab2.model.meta import get_meta_architecture, make_config

_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
_MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


# Weights of layers that compute with them (convolutions, dense layers); a
# frozen one is still a parameter of the model, unlike normalization statistics.
_LAYER_WEIGHT_NAMES = ("kernel", "bias", "depthwise_kernel", "pointwise_kernel")


def count_params(model, trainable_only=False):
    """Number of scalar weights (with BN statistics unless trainable_only)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(weight.shape) for weight in weights))


def count_model_params(model):
    """Parameters as the papers count them: every trainable weight plus frozen
    convolution and dense weights (e.g. a frozen stem), but no normalization
    statistics and no frozen normalization affine (detectron2 keeps those as
    buffers)."""
    frozen = [weight for weight in model.non_trainable_weights
              if weight.path.rsplit("/", 1)[-1] in _LAYER_WEIGHT_NAMES]
    return count_params(model, trainable_only=True) + int(
        sum(math.prod(weight.shape) for weight in frozen))


def _op_madds(op):
    """Multiply-adds of one graph op (0 for ops that are not counted)."""
    if op.type in _CONV_OPS:
        filter_shape = op.inputs[1].shape.as_list()
        output_elements = math.prod(op.outputs[0].shape.as_list())
        kernel_h, kernel_w, filter_in = filter_shape[:3]
        if op.type == "DepthwiseConv2dNative":
            return output_elements * kernel_h * kernel_w
        return output_elements * kernel_h * kernel_w * filter_in
    if op.type in _MATMUL_OPS:
        a_shape = op.inputs[0].shape.as_list()
        transpose = (op.get_attr("transpose_a") if op.type == "MatMul"
                     else op.get_attr("adj_x"))
        inner = a_shape[-2] if transpose else a_shape[-1]
        return math.prod(op.outputs[0].shape.as_list()) * inner
    return 0


class _ZeroWeightsScope(keras.StatelessScope):
    """A stateless scope in which every weight reads as zeros of its shape.

    Keras would otherwise trace an unallocated weight's initializer (a
    truncated normal per kernel) at every read; here each weight costs one
    fill op per graph. Only shapes matter for counting. Weights created in
    it are allocated when it exits, unless an outer stateless scope (that of
    `profile_builder`) defers them.
    """

    def __init__(self):
        super().__init__()
        self._zeros = {}

    def get_current_value(self, variable):
        key = (id(tf.compat.v1.get_default_graph()), id(variable))
        if key not in self._zeros:
            self._zeros[key] = tf.zeros(variable.shape, variable.dtype)
        return self._zeros[key]


def count_madds(model, input_shape):
    """Multiply-adds of `model` on one input of `input_shape` (H, W, C).

    An unbuilt model is built by the counted trace: Keras would first trace a
    subclassed model on symbolic inputs to build it, doubling the work, so the
    model is marked built and its layers build themselves on first call.
    """
    spec = tf.TensorSpec((1, *input_shape), tf.float32)

    def forward(images):
        with _ZeroWeightsScope():
            return model(images, training=False)

    model.built = True
    graph = tf.function(forward, autograph=False).get_concrete_function(spec).graph
    return int(_graph_madds(graph))


def _graph_madds(graph):
    """Sums `_op_madds` over a graph and the functions it calls.

    Keras runs grouped convolutions in a nested (XLA) function; its graph is
    looked up in the function library of the calling graph.
    """
    total = 0
    for op in graph.get_operations():
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            function = graph._get_function(op.get_attr("f").name)  # noqa
            total += _graph_madds(function.graph)
        else:
            total += _op_madds(op)
    return total


def profile_builder(build_fn, input_shape):
    """Builds a model with `build_fn()` without allocating weights; counts it.

    Returns a dict with `params` (as the papers count them, see
    `count_model_params`), `params_all` (with BN statistics), `madds`, and
    `params_m` / `madds_b` in millions / billions.
    """
    with keras.StatelessScope(initialize_variables=False):
        model = build_fn()
        madds = count_madds(model, input_shape)
        params = count_model_params(model)
        params_all = count_params(model)
    _forget_deferred_variables(model.variables)
    return {"params": params, "params_all": params_all, "madds": madds,
            "params_m": round(params / 1e6, 2),
            "madds_b": round(madds / 1e9, 2)}



def _forget_deferred_variables(variables):
    """Drops `variables` from Keras' list of variables to initialize later.

    Variables created in a `StatelessScope` are initialized when the
    outermost such scope exits (ours does not), so they must also leave the
    list that the next scope to exit would initialize. Keras has no public
    API for this.
    """
    ours = {id(variable) for variable in variables}
    pending = global_state.get_global_attribute("uninitialized_variables")
    if pending:
        global_state.set_global_attribute(
            "uninitialized_variables",
            [variable for variable in pending if id(variable) not in ours])


def placeholder_dataset(num_classes: int, num_things: Optional[int] = None) -> DatasetInfo:
    """A label space of `num_classes` classes, the last `num_things` of them
    things (default: the upper half), for counting a model that is not tied
    to a dataset."""
    if num_things is None:
        num_things = num_classes - num_classes // 2
    if not 0 <= num_things <= num_classes:
        raise ValueError(f"num_things must be in 0..{num_classes}, got {num_things}.")
    names = tuple(f"class{i}" for i in range(num_classes))
    return DatasetInfo(name=f"{num_classes}_classes", class_names=names,
                       colors=((0, 0, 0),) * num_classes,
                       thing_ids=tuple(range(num_classes - num_things, num_classes)),
                       ignore_label=255, label_divisor=1000, stuff_area_limit=0,
                       source_ids=tuple(range(num_classes)))


def label_space(num_classes: int, num_things: Optional[int] = None) -> DatasetInfo:
    """The registered dataset with `num_classes` labelled classes (and
    `num_things` things, if given), e.g. COCO for 133 (its "void" class 0 is
    the ignore label); else a `placeholder_dataset`.

    A model's class-dependent parts (a top-down family's box and mask heads,
    its semantic "other" class) then count as on that dataset.
    """
    for name in dataset_names():
        info = resolve_dataset(name)
        labelled = info.num_classes - (0 <= info.ignore_label < info.num_classes)
        if labelled == num_classes and num_things in (None, len(info.thing_ids)):
            return info
    return placeholder_dataset(num_classes, num_things)


def profile_model(input_size, meta_architecture="panoptic_deeplab", dataset=None,
                  num_classes=None, num_things=None, output_stride=32, crop_size=None,
                  **architecture):
    """Counts the model `build_model` would build, on an (H, W) RGB input
    padded as the model pads it (e.g. 800x1333 -> 800x1344 for a family that
    takes multiples of 32); the result's `input_size` is the padded size.

    `dataset` names the label space; or give `num_classes` (and optionally
    `num_things`) for a `placeholder_dataset`. Other arguments are those of
    `build_model`.
    """
    if (dataset is None) == (num_classes is None):
        raise ValueError("give exactly one of dataset and num_classes")
    info = (resolve_dataset(dataset) if dataset is not None
            else placeholder_dataset(num_classes, num_things))
    config = make_config(meta_architecture, info, output_stride=output_stride,
                         crop_size=crop_size, pixel_mean=DEFAULT_PIXEL_MEAN,
                         pixel_std=DEFAULT_PIXEL_STD, architecture=architecture,
                         postprocess={})
    family = get_meta_architecture(meta_architecture)
    size = tuple(int(family.padded_size(side, config)) for side in input_size)
    result = profile_builder(
        lambda: model_from_config(config, pretrained=False, create_variables=False),
        (*size, 3))
    result["input_size"] = size
    return result
