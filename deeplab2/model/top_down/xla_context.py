"""Whether ops are being traced for XLA: the detection ops that have two forms
(RoIAlign, NMS) pick their XLA form only then."""
import tensorflow as tf


def traced_for_xla() -> bool:
    """True inside a jit_compile tf.function or a TPU computation. No public API
    tells; this is what tf.function itself checks."""
    from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
