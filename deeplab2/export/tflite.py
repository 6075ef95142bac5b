"""Exports the network (deeplab2.export.network) as a TFLite flatbuffer for LiteRT.

The file takes float32 images `[batch, height, width, 3]` in [0, 255] at the
fixed input size (signature "serving_default", input `image`) and returns the
raw outputs by name; the post-processing runs on the host
(deeplab2.export.tflite_postprocess). Quantizations:

- float32: the network as it is.
- float16: the weights of convolutions stored as float16 (half the size),
  computed in float32 (`_float16_weights`).
- int8: post-training quantization of weights and activations, calibrated on
  representative images (deeplab2.export.calibration); the layers the
  family names (Panoptic-DeepLab's instance decoder, center and offset
  heads), the ops writing the outputs and the hard-swish activations stay
  float (see `_quantize_int8`), and so do the inputs and outputs.

Only TFLite builtin ops are allowed: the LiteRT interpreter has no TensorFlow
(Select, "Flex") kernels, so a model with other ops (Panoptic FPN's RoI
crops) is refused with the list of them. The file carries its
`NetworkInfo` as TFLite metadata (`deeplab2.network_info`, JSON).
"""
import re
import warnings
from typing import Callable, Dict, Iterable, NamedTuple, Optional, Sequence, Set

import keras
import numpy as np
import tensorflow as tf

from deeplab2.data.records import RecordFileError
from deeplab2.export.files import write_file_atomically
from deeplab2.export.network import (METADATA_KEY, ConversionError, NetworkFileError,
                                     NetworkInfo, check_input_size, network_function,
                                     output_shapes)
from deeplab2.model.meta import ModelConfig, get_meta_architecture

FORMAT = "tflite"
SUFFIX = ".tflite"
QUANTIZATIONS = ("float32", "float16", "int8")
# The 4 bytes after the root offset of every TFLite flatbuffer.
_FILE_IDENTIFIER = b"TFL3"


def export_tflite(model: keras.Model, output_path: str, input_size: Sequence[int],
                  quantization: str = "float32",
                  calibration_images: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                  config: Optional[ModelConfig] = None) -> NetworkInfo:
    """Converts `model`'s network at `input_size` and writes it to `output_path`
    (whole or not at all, see deeplab2.export.files); returns its description.

    Args:
        model: a model built by deeplab2 (it carries `model.model_config`).
        output_path: the .tflite file to write.
        input_size: (height, width), a size the model takes.
        quantization: one of QUANTIZATIONS.
        calibration_images: for int8, a function returning an iterable of
            float32 [1, height, width, 3] images (deeplab2.export.calibration).
        config: the configuration the file carries for post-processing;
            default the model's (a Predictor's has its post-processing overrides).
    """
    data, info = convert(model, input_size, quantization, calibration_images, config)
    write_file_atomically(output_path, data)
    return info


def convert(model: keras.Model, input_size: Sequence[int], quantization: str = "float32",
            calibration_images: Optional[Callable[[], Iterable[np.ndarray]]] = None,
            config: Optional[ModelConfig] = None):
    """(flatbuffer bytes with the `NetworkInfo` embedded, that info); the
    arguments are `export_tflite`'s."""
    config = config or model.model_config
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got "
                         f"{quantization!r}.")
    if quantization == "int8" and calibration_images is None:
        raise ValueError("int8 quantization needs calibration images.")
    input_size = check_input_size(config, input_size)
    concrete = network_function(model, input_size).get_concrete_function()
    # The converter saves the function with the variables of its trackable
    # object; a Keras 3 model tracks none for tf.Module (its outputs would be
    # computed from uninitialized variables), a module holding them does.
    variables = tf.Module()
    variables.tracked = [variable.value for variable in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in calibration_images())
    try:
        if quantization == "int8":
            data = _quantize_int8(converter, model)
        else:
            data = converter.convert()
            if quantization == "float16":
                data = _float16_weights(data)
    except RecordFileError:  # calibration records that do not read
        raise
    except Exception as error:  # the converter's errors have no public class
        raise ConversionError(_conversion_failure(config, error)) from None
    info = NetworkInfo(config, input_size, output_shapes(concrete),
                       FORMAT, quantization)
    return embed_info(data, info), info


def _quantize_int8(converter, model: keras.Model) -> bytes:
    """The calibrated int8 model with three kinds of ops left float:

    - those of the layers the family names (`int8_float_layers`, e.g.
      Panoptic-DeepLab's heads and instance decoder), whose outputs the
      post-processing thresholds and compares;
    - the ops writing the network's outputs;
    - hard-swish activations: LiteRT's XNNPACK delegate runs them in float
      but not in int8, and each int8 one split the delegated graph, which
      made the int8 network slower than the float32 one.

    Selective quantization is the QuantizationDebugger's (denylisted nodes).
    """
    from ai_edge_litert import schema_py_generated as schema

    with warnings.catch_warnings():  # it runs tf.lite.Interpreter, deprecated for LiteRT
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset)
    float_layers = get_meta_architecture(model.model_config.meta_architecture
                                         ).int8_float_layers
    present = {layer.name for layer in model._flatten_layers(include_self=False,
                                                              recursive=False)}
    ops = _operator_outputs(debugger.calibrated_model)
    float_ops = ops.graph_outputs & ops.all
    float_ops.update(ops.by_code.get(schema.BuiltinOperator.HARD_SWISH, ()))
    for layer in float_layers:
        # Fused ops are named by all the ops they fuse, joined by ";".
        scope = re.compile(rf"(^|[/;]){re.escape(layer)}(_\d+)?/")
        matched = {name for name in ops.all if scope.search(name)}
        if layer in present and not matched:
            raise ConversionError(f"int8: no op of the model's layer {layer!r} (one of its "
                                  "family's int8_float_layers) was found to keep float.")
        float_ops.update(matched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=sorted(float_ops))
    return debugger.get_nondebug_quantized_model()


class _OperatorOutputs(NamedTuple):
    """Names of the tensors the operators of a TFLite model's main graph
    write (the quantizer's node names)."""
    all: Set[str]
    graph_outputs: Set[str]  # the graph's outputs (an op writes most of them)
    by_code: Dict[int, Set[str]]  # by builtin operator code


def _operator_outputs(data: bytes) -> _OperatorOutputs:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    ops = _OperatorOutputs(set(), {graph.Tensors(graph.Outputs(i)).Name().decode()
                                   for i in range(graph.OutputsLength())}, {})
    for i in range(graph.OperatorsLength()):
        operator = graph.Operators(i)
        code = model.OperatorCodes(operator.OpcodeIndex())
        # Codes above 127 are only in the newer field (the schema's rule).
        kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        for j in range(operator.OutputsLength()):
            name = graph.Tensors(operator.Outputs(j)).Name().decode()
            ops.all.add(name)
            ops.by_code.setdefault(kind, set()).add(name)
    return ops


def _float16_weights(data: bytes) -> bytes:
    """The float32 flatbuffer `data` with the weights of its convolutions and
    fully connected layers stored as float16, each turned back to float32 by
    a DEQUANTIZE op ahead of the graph (which XNNPACK folds at load time).

    Biases, the other constants, weights beyond float16's range and the
    weights of the main graph's first convolution stay float32: they weigh
    little, and rounding them too, as the converter's own float16 mode does,
    gave 3.9 times the error on the quickstart model's outputs (2.5e-2
    against 6.5e-3 relative to each output's largest value over the
    synthetic val split; 1.1e-2 with only the first convolution rounded too).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    operators = schema.BuiltinOperator
    weighted = (operators.CONV_2D, operators.DEPTHWISE_CONV_2D, operators.FULLY_CONNECTED)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode)
             for code in model.operatorCodes]
    halves = {}  # float32 buffer index -> its float16 copy's buffer index
    for number, graph in enumerate(model.subgraphs):
        ordered = [int(operator.inputs[1]) for operator in graph.operators
                   if codes[operator.opcodeIndex] in weighted]
        kept = set(ordered[:1]) if number == 0 else set()
        casts = []
        for index in sorted(set(ordered) - kept):
            tensor = graph.tensors[index]
            values = model.buffers[tensor.buffer].data
            if tensor.type != schema.TensorType.FLOAT32 or values is None:
                continue  # a weight computed in the graph
            if tensor.buffer not in halves:
                half_values = np.frombuffer(bytes(values), np.float32).astype(np.float16)
                if not np.isfinite(half_values).all():
                    continue  # beyond float16's range
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(half_values.tobytes(), np.uint8)
                model.buffers.append(buffer)
                halves[tensor.buffer] = len(model.buffers) - 1
            half = schema.TensorT()
            half.shape, half.type = list(tensor.shape), schema.TensorType.FLOAT16
            half.name = tensor.name + b"_float16"
            half.buffer = halves[tensor.buffer]
            graph.tensors.append(half)
            tensor.buffer = 0  # the empty buffer: now an op's output
            cast = schema.OperatorT()
            cast.opcodeIndex = _dequantize_code(model, codes)
            cast.inputs, cast.outputs = [len(graph.tensors) - 1], [index]
            casts.append(cast)
        graph.operators = casts + graph.operators
    used = {tensor.buffer for graph in model.subgraphs for tensor in graph.tensors}
    used.update(entry.buffer for entry in model.metadata or [])
    used.update(model.metadataBuffer if model.metadataBuffer is not None else [])
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            buffer.data = None  # a float32 weight replaced by its float16 copy
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _dequantize_code(model, codes: list) -> int:
    """Index of the DEQUANTIZE operator code in `model` (`codes` lists the
    builtin codes, kept in step), added or raised to version 3, the version
    of float16 inputs."""
    from ai_edge_litert import schema_py_generated as schema

    dequantize = schema.BuiltinOperator.DEQUANTIZE
    if dequantize not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = dequantize
        code.version = 3
        model.operatorCodes.append(code)
        codes.append(dequantize)
    index = codes.index(dequantize)
    model.operatorCodes[index].version = max(model.operatorCodes[index].version, 3)
    return index


def _conversion_failure(config, error: Exception) -> str:
    """One line: which model failed to convert and why (its non-builtin ops)."""
    text = str(error)
    select_ops = re.search(r"TF Select ops: ([^\n]+)", text)
    if select_ops:
        return (f"the {config.meta_architecture} model does not convert to TFLite: its ops "
                f"{select_ops.group(1).strip()} are no TFLite builtins, and the LiteRT "
                "interpreter has no TensorFlow (Select) kernels to run them; export it as a "
                "SavedModel or as ONNX instead.")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (f"the {config.meta_architecture} model does not convert to TFLite: "
            f"{type(error).__name__}: {lines[0] if lines else ''}")


def embed_info(data: bytes, info: NetworkInfo) -> bytes:
    """The flatbuffer `data` with `info` added as metadata `METADATA_KEY`."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    model.buffers.append(schema.BufferT(data=np.frombuffer(info.to_json().encode(),
                                                           np.uint8)))
    model.metadata = (model.metadata or []) + [
        schema.MetadataT(name=METADATA_KEY, buffer=len(model.buffers) - 1)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def is_tflite(data: bytes) -> bool:
    return data[4:8] == _FILE_IDENTIFIER


def read_info(data: bytes, source: str) -> NetworkInfo:
    """The `NetworkInfo` embedded in the TFLite flatbuffer `data` (of the file
    `source`); NetworkFileError when it is none of this library's networks."""
    from ai_edge_litert import schema_py_generated as schema

    if not is_tflite(data):
        raise NetworkFileError(f"{source} is not a TFLite file.")
    try:
        model = schema.Model.GetRootAs(data, 0)
        entries = [model.Metadata(i) for i in range(model.MetadataLength())]
        for entry in entries:
            if entry.Name() == METADATA_KEY.encode():
                text = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
                break
        else:
            text = None
    except Exception as error:  # a truncated or corrupt flatbuffer
        raise NetworkFileError(f"{source}: unreadable TFLite file ({type(error).__name__})"
                               ) from None
    if text is None:
        raise NetworkFileError(
            f"{source} is a TFLite model of another origin: it has no {METADATA_KEY} "
            "metadata (export the model with scripts/export_model.py --format tflite).")
    return NetworkInfo.from_json(text, source)
