"""without_autograph: functions are traced as written."""
import pytest
import tensorflow as tf

from deeplab2.utils.tracing import without_autograph


def _python_branch(x):
    if x > 0:  # a tensor as a Python bool: only autograph makes this a tf.cond
        return x
    return -x


def test_a_tensor_used_as_a_python_bool_fails_at_trace_time_instead_of_being_converted():
    dataset = tf.data.Dataset.from_tensor_slices([-2.0, 3.0])
    assert list(dataset.map(_python_branch).as_numpy_iterator()) == [2.0, 3.0]
    with pytest.raises(TypeError, match="as a Python `bool`"):
        dataset.map(without_autograph(_python_branch))


def test_tensorflow_control_flow_runs_as_written():
    def branch(x):
        return tf.cond(x > 0, lambda: x, lambda: -x)

    dataset = tf.data.Dataset.from_tensor_slices([-2.0, 3.0])
    assert list(dataset.map(without_autograph(branch)).as_numpy_iterator()) == [2.0, 3.0]
