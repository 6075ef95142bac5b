"""Exports the network (deeplab2.export.network) as an ONNX model, through tf2onnx.

The model takes float32 images `[batch, height, width, 3]` in [0, 255] (input
`image`, the batch dynamic, the size fixed) and returns the raw outputs by
name; the post-processing runs on the host (deeplab2.export.tflite_postprocess).
Opset 18, the newest tf2onnx 1.17 writes (ONNX Runtime runs it from 1.14 on).
The model carries its `NetworkInfo` in `metadata_props`
(`deeplab2.network_info`, JSON).

One construct is restructured after conversion: tf2onnx writes a resize to a
size known when traced as ONNX `Resize` with float `scales` (output / input),
and ONNX Runtime takes `floor(input * scale)` as the output size, so a scale
that float32 does not hold exactly loses a row (the decoder's align-corners
upsampling of 9 rows to 17: 9 * float32(17 / 9) < 17). Each such `Resize` is
given its integer output `sizes` instead, read off the shapes ONNX infers.
"""
import logging
from typing import Optional, Sequence

import keras
import numpy as np

from deeplab2.export.files import write_file_atomically
from deeplab2.export.network import (METADATA_KEY, ConversionError, NetworkFileError,
                                     NetworkInfo, check_input_size, network_function,
                                     output_shapes)
from deeplab2.model.meta import ModelConfig

FORMAT = "onnx"
SUFFIX = ".onnx"
OPSET = 18


def export_onnx(model: keras.Model, output_path: str, input_size: Sequence[int],
                config: Optional[ModelConfig] = None) -> NetworkInfo:
    """Converts `model`'s network at `input_size` (height, width: a size the
    model takes) and writes it to `output_path` (whole or not at all, see
    deeplab2.export.files); returns its description. `config` is the
    configuration the file carries for post-processing, default the model's."""
    data, info = convert(model, input_size, config)
    write_file_atomically(output_path, data)
    return info


def convert(model: keras.Model, input_size: Sequence[int],
            config: Optional[ModelConfig] = None):
    """(serialized ONNX model with the `NetworkInfo` embedded, that info)."""
    import onnx
    import tf2onnx

    config = config or model.model_config
    input_size = check_input_size(config, input_size)
    function = network_function(model, input_size)
    concrete = function.get_concrete_function()
    # tf2onnx logs the optimizations it skips with tracebacks (e.g. folding
    # an Add of a scalar into a Conv): harmless, and not the user's concern.
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=function.input_signature, opset=OPSET)
    except Exception as error:  # tf2onnx's errors have no common class
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ConversionError(f"the {config.meta_architecture} model does not convert to "
                              f"ONNX: {type(error).__name__}: {lines[0] if lines else ''}"
                              ) from None
    finally:
        logger.setLevel(level)
    _resize_to_sizes(proto)
    info = NetworkInfo(config, input_size, output_shapes(concrete),
                       FORMAT)
    onnx.helper.set_model_props(proto, {METADATA_KEY: info.to_json()})
    return proto.SerializeToString(), info


def _resize_to_sizes(proto) -> None:
    """Replaces the float `scales` of each Resize by integer `sizes` of the
    height and width (see the module docstring), in graph order: each fix lets
    shape inference reach the next one."""
    from onnx import helper, numpy_helper, shape_inference

    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    while True:
        inferred = shape_inference.infer_shapes(proto).graph
        shapes = {value.name: value.type.tensor_type.shape
                  for value in list(inferred.value_info) + list(inferred.input)}
        node = next((node for node in proto.graph.node
                     if node.op_type == "Resize" and len(node.input) == 3
                     and node.input[2] in initializers
                     and _static_sides(shapes.get(node.input[0]))), None)
        if node is None:
            break
        scales = numpy_helper.to_array(initializers[node.input[2]])
        sides = _static_sides(shapes[node.input[0]])
        sizes = numpy_helper.from_array(
            np.round(np.array(sides) * scales[2:]).astype(np.int64), f"{node.name}/sizes")
        proto.graph.initializer.append(sizes)
        node.input[2] = ""
        node.input.append(sizes.name)
        node.attribute.append(helper.make_attribute("axes", [2, 3]))
    used = {name for node in proto.graph.node for name in node.input}
    unused = [tensor for tensor in proto.graph.initializer if tensor.name not in used]
    for tensor in unused:
        proto.graph.initializer.remove(tensor)


def _static_sides(shape):
    """(height, width) of an NCHW shape when both are known, else None."""
    if shape is None or len(shape.dim) != 4:
        return None
    sides = [dim.dim_value if dim.HasField("dim_value") else None for dim in shape.dim[2:]]
    return tuple(sides) if None not in sides else None


def read_info(data: bytes, source: str) -> NetworkInfo:
    """The `NetworkInfo` in the metadata of the serialized ONNX model `data`
    (of the file `source`); NetworkFileError when it is none of this library's."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends
        raise NetworkFileError(f"{source} is neither a TFLite nor an ONNX file "
                               f"({type(error).__name__}).") from None
    if not proto.ir_version or not proto.graph.node:
        raise NetworkFileError(f"{source} is neither a TFLite nor an ONNX file.")
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if METADATA_KEY not in props:
        raise NetworkFileError(
            f"{source} is an ONNX model of another origin: it has no {METADATA_KEY} "
            "metadata (export the model with scripts/export_model.py --format onnx).")
    return NetworkInfo.from_json(props[METADATA_KEY], source)
