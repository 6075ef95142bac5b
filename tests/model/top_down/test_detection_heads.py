"""Tests of the RPN, box and mask heads: the spec's parameter counts (and
torchvision's Mask R-CNN total), output layouts, init, serialization, XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import profile
from deeplab2.model.top_down import box_head
from deeplab2.model.top_down import fpn
from deeplab2.model.top_down import mask_head
from deeplab2.model.top_down import rpn_head

R50_CONVS = 23_454_912  # SPEC_TOP_DOWN.md section 5 (ResNet-50 without BN)
R50_CHANNELS = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
LEVEL_SIZES = {"p2": (6, 5), "p3": (3, 3), "p4": (2, 2), "p5": (1, 1), "p6": (1, 1)}


def _count_params(layer, input_shape):
    """Parameters of `layer` built for `input_shape`, allocating no weight."""
    with keras.StatelessScope(initialize_variables=False):
        layer.build(input_shape)
    profile._forget_deferred_variables(layer.weights)  # noqa: SLF001, as profile_builder
    return profile.count_params(layer)


def _count_paper_params(layer, input_shape):
    """As `_count_params`, without batch norm statistics (as the papers count)."""
    _count_params(layer, input_shape)
    return profile.count_model_params(layer)


def _normal(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _pyramid(channels, batch=2):
    return {level: _normal((batch, *size, channels), seed=i)
            for i, (level, size) in enumerate(LEVEL_SIZES.items())}


def _detection_params(num_classes):
    """FPN + RPN + box head + mask head of Mask R-CNN R50-FPN (full widths)."""
    return (_count_params(fpn.FPN(), {k: (None, None, None, c) for k, c in R50_CHANNELS.items()})
            + _count_params(rpn_head.RPNHead(), {"p2": (1, 8, 8, 256)})
            + _count_params(box_head.BoxHead(num_classes), (1, 7, 7, 256))
            + _count_params(mask_head.MaskHead(num_classes), (1, 14, 14, 256)))


def test_parameters_match_the_spec():
    assert _count_params(rpn_head.RPNHead(num_anchors=3), {"p2": (1, 8, 8, 256)}) == 593_935
    assert _count_params(box_head.BoxHead(80), (1, 7, 7, 256)) == 14_306_705
    assert _count_params(mask_head.MaskHead(80), (1, 14, 14, 256)) == 2_643_280
    assert R50_CONVS + _detection_params(80) == 44_343_216


def test_parameters_add_up_to_torchvision_mask_rcnn():
    # torchvision's num_classes = 91 counts background: 91 logits (not 92),
    # but 4 * 91 deltas and 91 mask channels, as our heads have for K = 91.
    one_logit = 1024 + 1
    assert R50_CONVS + _detection_params(91) - one_logit == 44_401_393


def test_background_outputs_add_detectron1s_unused_class_0():
    # 4 deltas and a mask channel more (UPSNet's 46.1M), outputs unchanged in shape.
    assert _count_params(box_head.BoxHead(80, background_outputs=True),
                         (1, 7, 7, 256)) == 14_306_705 + 4 * (1024 + 1)
    assert _count_params(mask_head.MaskHead(80, background_outputs=True),
                         (1, 14, 14, 256)) == 2_643_280 + (256 + 1)
    features = _normal((3, 7, 7, 8))
    boxes = box_head.BoxHead(5, fc_channels=16, background_outputs=True)
    outputs = boxes(features)
    assert outputs["box_deltas"].shape == (3, 20)
    hidden = tf.nn.relu(boxes.fc2(tf.nn.relu(boxes.fc1(features.reshape(3, -1)))))
    np.testing.assert_allclose(outputs["box_deltas"], boxes.box_regressor(hidden)[:, 4:],
                               rtol=1e-6)
    masks = mask_head.MaskHead(5, channels=8, background_outputs=True)
    rois = _normal((3, 14, 14, 8))
    logits = masks(rois)
    assert logits.shape == (3, 28, 28, 5)
    x = rois
    for conv in masks.convs:
        x = tf.nn.relu(conv(x))
    np.testing.assert_allclose(logits, masks.predictor(tf.nn.relu(masks.upsample(x)))[..., 1:],
                               rtol=1e-6)
    assert mask_head.MaskHead.from_config(masks.get_config()).background_outputs


def test_rpn_outputs_are_flattened_by_row_column_anchor():
    num_anchors, channels = 3, 8
    head = rpn_head.RPNHead(num_anchors=num_anchors, channels=channels)
    features = _pyramid(4)
    outputs = head(features)
    for level, x in features.items():
        hidden = tf.nn.relu(tf.nn.conv2d(x, head.conv.kernel, 1, "SAME") + head.conv.bias)
        logits = tf.nn.conv2d(hidden, head.objectness.kernel, 1, "SAME") + head.objectness.bias
        deltas = tf.nn.conv2d(hidden, head.box_deltas.kernel, 1, "SAME") + head.box_deltas.bias
        height, width = LEVEL_SIZES[level]
        assert outputs["logits"][level].shape == (2, height * width * num_anchors)
        assert outputs["deltas"][level].shape == (2, height * width * num_anchors, 4)
        for i in range(height):
            for j in range(width):
                for a in range(num_anchors):
                    index = (i * width + j) * num_anchors + a
                    np.testing.assert_allclose(outputs["logits"][level][:, index],
                                               logits[:, i, j, a], atol=1e-6)
                    np.testing.assert_allclose(outputs["deltas"][level][:, index],
                                               deltas[:, i, j, 4 * a:4 * a + 4], atol=1e-6)
    shapes = {level: x.shape for level, x in features.items()}
    assert head.compute_output_shape(shapes) == {
        key: {level: tuple(x.shape) for level, x in value.items()}
        for key, value in outputs.items()}


def test_rpn_rejects_levels_of_different_widths():
    with pytest.raises(ValueError, match="same channels"):
        rpn_head.RPNHead(channels=4).build({"p2": (1, 4, 4, 8), "p3": (1, 2, 2, 16)})


def test_box_and_mask_output_shapes():
    num_classes, rois = 5, 3
    boxes = box_head.BoxHead(num_classes, fc_channels=16)
    outputs = boxes(_normal((rois, 7, 7, 8)))
    assert outputs["class_logits"].shape == (rois, num_classes + 1)
    assert outputs["box_deltas"].shape == (rois, 4 * num_classes)
    assert boxes.compute_output_shape((rois, 7, 7, 8)) == {
        key: tuple(x.shape) for key, x in outputs.items()}
    masks = mask_head.MaskHead(num_classes, channels=8)
    logits = masks(_normal((rois, 14, 14, 8)))
    assert logits.shape == (rois, 28, 28, num_classes)
    assert masks.compute_output_shape((rois, 14, 14, 8)) == (rois, 28, 28, num_classes)
    assert boxes(_normal((0, 7, 7, 8)))["box_deltas"].shape == (0, 4 * num_classes)


def test_box_head_flattens_then_applies_two_relu_fcs():
    boxes = box_head.BoxHead(2, fc_channels=16)
    x = _normal((4, 7, 7, 3))
    outputs = boxes(x)
    hidden = np.maximum(x.reshape(4, -1) @ boxes.fc1.kernel.numpy() + boxes.fc1.bias.numpy(), 0)
    hidden = np.maximum(hidden @ boxes.fc2.kernel.numpy() + boxes.fc2.bias.numpy(), 0)
    np.testing.assert_allclose(outputs["class_logits"],
                               hidden @ boxes.classifier.kernel.numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["box_deltas"],
                               hidden @ boxes.box_regressor.kernel.numpy(), atol=1e-5)


def test_mask_head_upsamples_each_pixel_into_a_2x2_block():
    masks = mask_head.MaskHead(1, channels=4)
    masks.build((1, 2, 2, 4))
    identity = np.zeros((3, 3, 4, 4), "float32")
    identity[1, 1] = np.eye(4)
    for conv in masks.convs:  # keep the (non-negative) input
        conv.kernel.assign(identity)
    masks.upsample.kernel.assign(np.ones((2, 2, 4, 4), "float32"))
    masks.predictor.kernel.assign(np.full((1, 1, 4, 1), 0.25, "float32"))
    x = np.abs(_normal((1, 2, 2, 4)))
    expected = np.repeat(np.repeat(x.sum(axis=-1), 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(masks(x)[..., 0], expected, rtol=1e-5)


def _built_rpn():
    head = rpn_head.RPNHead(num_anchors=3, channels=64)
    head.build({"p2": (1, 4, 4, 64)})
    return head


def _built_box_head():
    head = box_head.BoxHead(80, fc_channels=64)
    head.build((1, 7, 7, 4))
    return head


def _built_mask_head():
    head = mask_head.MaskHead(80, channels=64)
    head.build((1, 14, 14, 4))
    return head


@pytest.mark.parametrize("kernel, stddev", [
    (lambda: _built_rpn().conv.kernel, 0.01),
    (lambda: _built_rpn().objectness.kernel, 0.01),
    (lambda: _built_rpn().box_deltas.kernel, 0.01),
    (lambda: _built_box_head().classifier.kernel, 0.01),
    (lambda: _built_box_head().box_regressor.kernel, 0.001),
    (lambda: _built_mask_head().predictor.kernel, 0.001),
])
def test_predictors_start_from_small_gaussians(kernel, stddev):
    keras.utils.set_random_seed(0)
    values = kernel().numpy()
    # Five standard errors: the sample mean of n draws has standard error
    # stddev / sqrt(n) and the sample deviation about stddev / sqrt(2 n).
    n = values.size
    assert abs(values.mean()) < 5 * stddev / np.sqrt(n)
    assert values.std() == pytest.approx(stddev, rel=5 / np.sqrt(2 * n))


def test_biases_start_at_zero():
    for head in (_built_rpn(), _built_box_head(), _built_mask_head()):
        biases = [w for w in head.weights if w.path.endswith("bias")]
        assert biases and all(not np.any(b.numpy()) for b in biases)


HEADS = [
    (lambda: rpn_head.RPNHead(num_anchors=3, channels=8, name="rpn"), lambda: _pyramid(4)),
    (lambda: box_head.BoxHead(4, fc_channels=16, name="box"), lambda: _normal((3, 7, 7, 8))),
    (lambda: mask_head.MaskHead(4, channels=8, name="mask"), lambda: _normal((3, 14, 14, 8))),
]


@pytest.mark.parametrize("make_head, make_inputs", HEADS, ids=["rpn", "box", "mask"])
def test_config_round_trip_gives_the_same_outputs(make_head, make_inputs):
    head, inputs = make_head(), make_inputs()
    expected = head(inputs)
    clone = type(head).from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    clone.build(tf.nest.map_structure(lambda x: x.shape, inputs))
    clone.set_weights(head.get_weights())
    tf.nest.map_structure(np.testing.assert_array_equal, clone(inputs), expected)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert type(restored) is type(head)


@pytest.mark.parametrize("make_head, make_inputs", HEADS, ids=["rpn", "box", "mask"])
def test_every_weight_is_checkpointed(make_head, make_inputs):
    head = make_head()
    head(make_inputs())
    checkpoint = tf.train.Checkpoint(root=head)  # the view holds it weakly
    saved = {id(obj) for obj in tf.train.TrackableView(checkpoint).descendants()}
    assert head.weights and [w.path for w in head.weights if id(w) not in saved] == []


@pytest.mark.parametrize("make_head, make_inputs", HEADS, ids=["rpn", "box", "mask"])
def test_compiles_with_xla(make_head, make_inputs):
    head, inputs = make_head(), make_inputs()
    expected = head(inputs)
    outputs = tf.function(head, jit_compile=True)(inputs)
    tf.nest.map_structure(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), outputs, expected)


def test_seamless_heads_match_the_spec_counts():
    # Batch norm after the RPN conv; GroupNorm after every fc and conv of the
    # region heads, which then have no bias (SPEC_TOP_DOWN.md section 5, Cityscapes).
    assert _count_paper_params(rpn_head.RPNHead(normalization="batch_norm", activation="leaky_relu"),
                         {"p2": (1, 8, 8, 256)}) == 594_191
    assert _count_paper_params(box_head.BoxHead(8, normalization="group_norm",
                                          activation="leaky_relu"),
                         (1, 7, 7, 256)) == 13_939_753
    assert _count_paper_params(mask_head.MaskHead(8, normalization="group_norm",
                                            activation="leaky_relu"),
                         (1, 14, 14, 256)) == 2_626_056


def test_normalized_heads_apply_norm_then_leaky_relu():
    features = _normal((3, 7, 7, 8)) * 3.0
    boxes = box_head.BoxHead(5, fc_channels=64, normalization="group_norm",
                             activation="leaky_relu")
    outputs = boxes(features)

    def group_norm_leaky(x, groups):  # fresh GroupNorm: gamma 1, beta 0
        x = np.asarray(x, np.float64)
        grouped = x.reshape(x.shape[:-1] + (groups, -1))
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        mean = grouped.mean(axis=axes, keepdims=True)
        variance = grouped.var(axis=axes, keepdims=True)
        y = ((grouped - mean) / np.sqrt(variance + 1e-5)).reshape(x.shape)
        return np.where(y > 0, y, 0.01 * y)

    hidden = group_norm_leaky(boxes.fc1(features.reshape(3, -1)), 32)
    hidden = group_norm_leaky(boxes.fc2(hidden.astype("float32")), 32)
    np.testing.assert_allclose(outputs["class_logits"],
                               boxes.classifier(hidden.astype("float32")), rtol=1e-4, atol=1e-6)
    assert boxes.fc1.bias is None and boxes.norm1.groups == 32
    masks = mask_head.MaskHead(5, channels=8, normalization="group_norm",
                               activation="leaky_relu")
    rois = _normal((2, 14, 14, 8))
    logits = masks(rois)
    x = rois
    for conv in masks.convs + [masks.upsample]:
        x = group_norm_leaky(conv(x.astype("float32")), 4)  # gcd(32, 8 // 2) groups
    np.testing.assert_allclose(logits, masks.predictor(x.astype("float32")), rtol=1e-4,
                               atol=1e-5)
    clone = mask_head.MaskHead.from_config(masks.get_config())
    assert clone.normalization == "group_norm" and clone.activation == "leaky_relu"
