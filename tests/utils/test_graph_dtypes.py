"""graph_dtypes finds tensors of nested functions: calls, XLA calls, loop bodies, branches."""
import tensorflow as tf

from deeplab2.utils import graph_dtypes


@tf.function
def _float64_in_loop(x):
    def body(i, value):
        return i + 1, value + tf.cast(tf.cast(value, tf.float64) * 2.0, tf.float32)

    return tf.while_loop(lambda i, _: i < 3, body, (0, x))[1]


_compiled_caller = tf.function(lambda x: _float64_in_loop(x) + 1.0, jit_compile=True)


@tf.function
def _two_calls_deep(x):
    return _compiled_caller(x) * 2.0


@tf.function
def _int64_in_branch(x):
    return tf.cond(x[0] > 0, lambda: x, lambda: tf.cast(tf.size(x, out_type=tf.int64),
                                                        tf.float32) + x)


@tf.function
def _float32_only(x):
    def body(i, value):
        return i + 1, value * 2.0

    return tf.cond(x[0] > 0, lambda: _compiled_caller_float32(x),
                   lambda: tf.while_loop(lambda i, _: i < 3, body, (0, x))[1])


_compiled_caller_float32 = tf.function(lambda x: tf.sqrt(x) + 1.0, jit_compile=True)

_VECTOR = tf.TensorSpec([None], tf.float32)


def test_finds_float64_two_calls_deep_in_a_while_body():
    function = _two_calls_deep.get_concrete_function(_VECTOR)
    top_level = {output.dtype for op in function.graph.get_operations()
                 for output in op.outputs}
    assert tf.float64 not in top_level
    assert tf.float64 in graph_dtypes.tensor_dtypes(function)
    found = graph_dtypes.ops_producing(function, [tf.float64])
    # The float64 cast, the constant 2.0 and their product, all in the loop body.
    assert sorted(entry.rsplit(" ", 1)[1] for entry in found) == ["(Cast)", "(Const)", "(Mul)"]
    assert all("while_body" in entry and entry.count("/__inference_") == 2
               for entry in found), found


def test_finds_int64_in_a_cond_branch():
    function = _int64_in_branch.get_concrete_function(_VECTOR)
    assert tf.int64 in graph_dtypes.tensor_dtypes(function)
    found = graph_dtypes.ops_producing(function, [tf.int64])
    assert found and all("cond_false" in entry for entry in found), found


def test_float32_only_function_reports_none():
    function = _float32_only.get_concrete_function(_VECTOR)
    assert graph_dtypes.tensor_dtypes(function) == {tf.float32, tf.int32, tf.bool}
    assert graph_dtypes.ops_producing(function, [tf.float64, tf.int64]) == []
    # The walk did reach the compiled call and the loop body.
    paths = [path for path, _ in graph_dtypes.walk_ops(function.graph)]
    assert any("while_body" in path for path in paths)
    assert any("cond_true" in path and "/__inference_" in path for path in paths)


@tf.function
def _strings_outside_compiled_code(x):
    return _compiled_caller(x) + tf.cast(tf.strings.length("abc"), tf.float32)


def test_compiled_dtypes_are_those_inside_xla_functions_only():
    function = _strings_outside_compiled_code.get_concrete_function(_VECTOR)
    assert tf.string in graph_dtypes.tensor_dtypes(function)
    compiled = graph_dtypes.compiled_tensor_dtypes(function)
    assert tf.string not in compiled and tf.float64 in compiled  # the float64 loop body
    plain = _float32_only.get_concrete_function(_VECTOR)
    assert graph_dtypes.compiled_tensor_dtypes(plain) == {tf.float32}
