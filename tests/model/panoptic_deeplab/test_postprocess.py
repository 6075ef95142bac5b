"""Panoptic-DeepLab post-processing vs the numpy oracle, a hand-worked case, float32 checks."""
import importlib
import importlib.util
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model.layers import resize
from deeplab2.model.panoptic_deeplab.postprocess import grouping
from deeplab2.model.panoptic_deeplab.postprocess import panoptic_deeplab
from deeplab2.utils import graph_dtypes
from deeplab2.utils.xla_buffers import compiled_stored_shapes, elements


def _load_oracle():
    """Imports the sibling numpy_reference.py under a name no other test folder uses."""
    path = pathlib.Path(__file__).with_name("numpy_reference.py")
    spec = importlib.util.spec_from_file_location("postprocess_numpy_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


numpy_reference = _load_oracle()

INTEGER_KEYS = (common.SEMANTIC, common.INSTANCE, common.PANOPTIC,
                common.INSTANCE_CLASSES,
                common.INSTANCE_PANOPTIC_IDS, common.INSTANCE_CENTERS)

# Static options, each compiled once: (height, width, classes, thing ids,
# nms kernel, keep k, stuff area limit, tile size, logits?).
CONFIGS = {
    "cityscapes_like": (17, 23, 7, (4, 5, 6), 3, 200, 40, 64, True),
    "few_keep_k": (17, 23, 5, (1, 3), 1, 3, 60, 4, True),
    "small_tiles": (19, 21, 6, (0, 2, 5), 5, 20, 50, 3, True),
    "probabilities": (17, 23, 6, (3, 4, 5), 7, 12, 45, 8, False),
    "all_things": (9, 31, 4, (0, 1, 2, 3), 3, 200, 10, 16, True),
}


def _random_inputs(rng, height, width, num_classes, batch=2, case=0):
    """Random batch; image n of case c takes corner-case modes from n + batch * c."""
    logits = np.empty((batch, height, width, num_classes), np.float32)
    heat = np.empty((batch, height, width, 1), np.float32)
    offset = np.empty((batch, height, width, 2), np.float32)
    for b in range(batch):
        mode = b + batch * case
        if mode % 2 == 0:  # small integers: ties in the argmax and the vote
            logits[b] = rng.integers(0, 3, (height, width, num_classes))
        else:  # blocky regions: stuff areas on both sides of the limit
            coarse = rng.standard_normal((4, 5, num_classes)) * 3
            rows = np.arange(height) * 4 // height
            cols = np.arange(width) * 5 // width
            logits[b] = coarse[rows][:, cols] + rng.standard_normal(
                (height, width, num_classes))
        if mode % 3 == 0:  # no center: everything <= threshold 0.1
            heat[b] = rng.random((height, width, 1)) * 0.1
        elif mode % 3 == 1:  # many peaks, more than small keep_k
            heat[b] = rng.random((height, width, 1))
        else:  # planted peaks with equal scores
            heat[b] = rng.random((height, width, 1)) * 0.1
            num_peaks = rng.integers(1, 25)
            ys, xs = rng.integers(0, height, num_peaks), rng.integers(0, width, num_peaks)
            heat[b, ys, xs, 0] = rng.choice([0.5, 0.7, 0.9, 1.0], num_peaks)
        if mode // 3 % 3 == 0:  # integers: exact equal-distance centers
            offset[b] = rng.integers(-6, 7, (height, width, 2))
        elif mode // 3 % 3 == 1:
            offset[b] = rng.standard_normal((height, width, 2)) * 4
        else:  # far from any center
            offset[b] = rng.standard_normal((height, width, 2)) * 40
    return logits, heat, offset


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def _assert_same(result, expected):
    for key in INTEGER_KEYS:
        np.testing.assert_array_equal(np.asarray(result[key]), expected[key], err_msg=key)
    np.testing.assert_allclose(np.asarray(result[common.INSTANCE_SCORES]),
                               expected[common.INSTANCE_SCORES], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_numpy_reference(name):
    (height, width, num_classes, things, kernel, keep_k, area_limit, tile_size,
     use_logits) = CONFIGS[name]
    options = dict(thing_class_ids=things, label_divisor=1000, ignore_label=255,
                   stuff_area_limit=area_limit, center_threshold=0.1,
                   nms_kernel=kernel, keep_k_centers=keep_k)
    rng = np.random.default_rng(sum(map(ord, name)))
    for case in range(6):
        logits, heat, offset = _random_inputs(rng, height, width, num_classes, case=case)
        scores = logits if use_logits else _softmax(logits)
        if use_logits:
            result = panoptic_deeplab(logits, heat, offset, tile_size=tile_size, **options)
        else:
            result = panoptic_deeplab(None, heat, offset, semantic_probabilities=scores,
                                      tile_size=tile_size, **options)
        expected = numpy_reference.postprocess(scores, heat, offset,
                                               scores_are_logits=use_logits, **options)
        _assert_same(result, expected)


@pytest.mark.parametrize("name, wanted", [
    ("few_keep_k", {"zero centers", "more peaks than keep_k", "stuff below limit",
                    "stuff above limit"}),
    ("cityscapes_like", {"tie in the vote", "stuff below limit", "stuff above limit",
                         "equal-distance centers", "thing pixels far from any center"}),
])
def test_corner_cases_occur_in_random_inputs(name, wanted):
    """The random cases above contain what they are meant to exercise."""
    height, width, num_classes, things, kernel, keep_k, area_limit = CONFIGS[name][:7]
    rng = np.random.default_rng(sum(map(ord, name)))
    seen = set()
    for case in range(6):
        logits, heat, offset = _random_inputs(rng, height, width, num_classes, case=case)
        out = numpy_reference.postprocess(
            logits, heat, offset, scores_are_logits=True, thing_class_ids=things,
            label_divisor=1000, ignore_label=255, stuff_area_limit=area_limit,
            center_threshold=0.1, nms_kernel=kernel, keep_k_centers=keep_k)
        for b in range(2):
            num_peaks = len(numpy_reference.find_centers(heat[b, :, :, 0], 0.1, kernel,
                                                         height * width))
            if num_peaks == 0:
                seen.add("zero centers")
            if num_peaks > keep_k:
                seen.add("more peaks than keep_k")
            semantic, panoptic = out[common.SEMANTIC][b], out[common.PANOPTIC][b]
            stuff = ~np.isin(semantic, things)
            if (panoptic[stuff] == 255000).any():
                seen.add("stuff below limit")
            if (panoptic[stuff] == semantic[stuff] * 1000).any():
                seen.add("stuff above limit")
            for instance in range(1, keep_k + 1):
                counts = np.bincount(semantic[out[common.INSTANCE][b] == instance])
                if counts.size and (counts == counts.max()).sum() > 1:
                    seen.add("tie in the vote")
            centers = out[common.INSTANCE_CENTERS][b]
            centers = centers[centers[:, 0] >= 0]
            if len(centers) > 1:
                ys, xs = np.nonzero(np.isin(semantic, things))
                distances = ((ys[:, None] + offset[b, ys, xs, :1] - centers[:, 0]) ** 2
                             + (xs[:, None] + offset[b, ys, xs, 1:] - centers[:, 1]) ** 2)
                if ((distances == distances.min(axis=1, keepdims=True)).sum(axis=1) > 1).any():
                    seen.add("equal-distance centers")
                if (distances.min(axis=1) > 30 ** 2).any():
                    seen.add("thing pixels far from any center")
    assert seen >= wanted


def test_tiling_does_not_change_results():
    """Also COCO-like labels: ignore label 0 (a class channel), label divisor 256."""
    rng = np.random.default_rng(7)
    logits, heat, offset = _random_inputs(rng, 33, 41, 5, batch=3, case=1)
    options = dict(thing_class_ids=(2, 4), label_divisor=256, ignore_label=0,
                   stuff_area_limit=30, nms_kernel=3, keep_k_centers=50)
    first = panoptic_deeplab(logits, heat, offset, tile_size=64, **options)
    second = panoptic_deeplab(logits, heat, offset, tile_size=5, **options)
    _assert_same(first, numpy_reference.postprocess(
        logits, heat, offset, scores_are_logits=True, center_threshold=0.1, **options))
    for key in INTEGER_KEYS:
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy(), err_msg=key)
    # Scores only differ by the order of float sums.
    np.testing.assert_allclose(first[common.INSTANCE_SCORES], second[common.INSTANCE_SCORES],
                               rtol=1e-6)


def test_hand_worked_case():
    """4x6 image, classes 0 road, 1 sky (stuff), 2 car, 3 person (things).

    Centers: A (2,1) 0.9 -> id 1, B (1,4) 0.8 -> id 2, C (3,5) 0.5 -> id 3, which
    gets no pixel. B's pixels are 2 person + 2 car: the tie votes car (smaller
    id), so both instances are cars, 2001 and 2002. Sky covers 6 pixels, not more
    than the limit 6, so it is void; road (10 pixels) stays 0.
    """
    semantic = np.array([[1, 1, 1, 1, 1, 1],
                         [2, 2, 0, 3, 3, 0],
                         [2, 2, 0, 2, 2, 0],
                         [0, 0, 0, 0, 0, 0]])
    logits = np.eye(4, dtype=np.float32)[semantic][None] * 10
    heat = np.full((1, 4, 6, 1), 0.05, np.float32)
    heat[0, 2, 1, 0], heat[0, 1, 4, 0], heat[0, 3, 5, 0] = 0.9, 0.8, 0.5
    offset = np.zeros((1, 4, 6, 2), np.float32)
    for (y, x), (cy, cx) in {(1, 0): (2, 1), (1, 1): (2, 1), (2, 0): (2, 1),
                             (1, 3): (1, 4), (2, 3): (1, 4), (2, 4): (1, 4)}.items():
        offset[0, y, x] = (cy - y, cx - x)
    offset[0, 3, 0] = (-1, 1)  # a stuff pixel pointing at A stays instance 0
    result = panoptic_deeplab(logits, heat, offset, thing_class_ids=(2, 3),
                              label_divisor=1000, ignore_label=255, stuff_area_limit=6,
                              nms_kernel=3, keep_k_centers=4)
    void = 255000
    np.testing.assert_array_equal(result[common.SEMANTIC][0], semantic)
    np.testing.assert_array_equal(result[common.INSTANCE][0], [[0, 0, 0, 0, 0, 0],
                                                               [1, 1, 0, 2, 2, 0],
                                                               [1, 1, 0, 2, 2, 0],
                                                               [0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(result[common.PANOPTIC][0],
                                  [[void] * 6,
                                   [2001, 2001, 0, 2002, 2002, 0],
                                   [2001, 2001, 0, 2002, 2002, 0],
                                   [0] * 6])
    np.testing.assert_array_equal(result[common.INSTANCE_CENTERS][0],
                                  [[2, 1], [1, 4], [3, 5], [-1, -1]])
    np.testing.assert_array_equal(result[common.INSTANCE_CLASSES][0],
                                  [2, 2, 255, 255])
    np.testing.assert_array_equal(result[common.INSTANCE_PANOPTIC_IDS][0],
                                  [2001, 2002, void, void])
    p = np.exp(10.0) / (np.exp(10.0) + 3)  # probability of a pixel's own class
    q = 1 / (np.exp(10.0) + 3)  # of any other class
    np.testing.assert_allclose(result[common.INSTANCE_SCORES][0],
                               [0.9 * p, 0.8 * (2 * p + 2 * q) / 4, 0, 0], rtol=1e-6)


def test_compiles_inside_a_jit_function():
    rng = np.random.default_rng(3)
    logits, heat, offset = _random_inputs(rng, 17, 23, 5)
    options = dict(thing_class_ids=(3, 4), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=40, nms_kernel=3, keep_k_centers=10)
    compiled = tf.function(lambda *args: panoptic_deeplab(*args, **options),
                           jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(logits, heat, offset)(stage="hlo")
    entry = hlo[hlo.index("ENTRY"):]
    entry = entry[:entry.index("\n}")]
    # All three inputs stay runtime parameters: none was folded into a
    # compile-time constant (which would recompile for every input value).
    assert entry.count("parameter(") == 3
    assert "while" in hlo
    result = compiled(logits, heat, offset)
    expected = numpy_reference.postprocess(logits, heat, offset, scores_are_logits=True,
                                           center_threshold=0.1, **options)
    _assert_same(result, expected)


def _upsampled_by_the_model(logits, heat, offset, size):
    """What the predictor post-processed before upsampling moved inside: the
    model's upsampling (TensorFlow's kernel), the softmax probabilities."""
    scale = resize.scale_align_corners(logits.shape[1:3], size)
    return (tf.nn.softmax(resize.resize_align_corners(logits, size)),
            resize.resize_align_corners(heat, size),
            resize.resize_align_corners(offset, size) * scale)


@pytest.mark.parametrize("name", ["cityscapes_like", "small_tiles", "few_keep_k"])
def test_upsampling_inside_equals_post_processing_the_upsampled_outputs(name):
    """The heads at stride 4 with `output_size`: the same maps as the
    post-processing of the full-resolution outputs and probabilities."""
    _, _, num_classes, things, kernel, keep_k, area_limit, tile_size, _ = CONFIGS[name]
    options = dict(thing_class_ids=things, label_divisor=1000, ignore_label=255,
                   stuff_area_limit=area_limit, center_threshold=0.1,
                   nms_kernel=kernel, keep_k_centers=keep_k, tile_size=tile_size)
    rng = np.random.default_rng(sum(map(ord, name)))
    for case in range(6):
        low = _random_inputs(rng, 6, 8, num_classes, case=case)
        probabilities, heat, offset = _upsampled_by_the_model(*low, (21, 29))
        inside = panoptic_deeplab(*low, output_size=(21, 29), **options)
        outside = panoptic_deeplab(None, heat, offset, semantic_probabilities=probabilities,
                                   **options)
        _assert_same(inside, {key: np.asarray(value) for key, value in outside.items()})
        assert (np.asarray(inside[common.INSTANCE]) > 0).any() or case % 3 == 0
        for key, expected in ((common.CENTER_HEATMAP, heat), (common.OFFSET, offset)):
            # XLA may fuse an interpolation's multiply-add into one rounding.
            np.testing.assert_allclose(inside[key], expected, rtol=0,
                                       atol=1e-6 * np.abs(expected).max())


def test_upsampling_inside_stores_no_full_resolution_class_scores():
    rng = np.random.default_rng(4)
    logits, heat, offset = _random_inputs(rng, 6, 8, 7, case=1)
    module = importlib.import_module(panoptic_deeplab.__module__)
    options = dict(thing_class_ids=(4, 5, 6), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=40, center_threshold=0.1, nms_kernel=3,
                   keep_k_centers=20, tile_size=8)
    shapes = compiled_stored_shapes(module._compiled_postprocess, logits, None, heat,
                                    offset, tf.constant([21, 29]), **options)
    assert "s32[2,21,29]" in shapes  # the maps are stored, at full resolution
    # No float buffer as large as the full-resolution scores, whatever its shape.
    assert max(elements(s) for s in shapes if s.startswith("f32")) < 2 * 21 * 29 * 7, shapes
    # Without output_size the full-resolution scores are an input.
    probabilities, heat, offset = _upsampled_by_the_model(logits, heat, offset, (21, 29))
    shapes = compiled_stored_shapes(module._compiled_postprocess, None, probabilities,
                                    heat, offset, None, **options)
    assert "f32[2,21,29,7]" in shapes


@pytest.mark.parametrize("inputs", ["logits", "probabilities", "unknown_sizes", "upsampled"])
def test_compiled_graph_has_no_float64_or_int64(inputs):
    """TPUs have no float64: the exported post-processing must not need it."""
    rng = np.random.default_rng(5)
    logits, heat, offset = _random_inputs(rng, 17, 23, 5, case=1)
    options = dict(thing_class_ids=(3, 4), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=40, nms_kernel=3, keep_k_centers=10)
    if inputs == "probabilities":
        function = tf.function(lambda scores, heat, offset: panoptic_deeplab(
            None, heat, offset, semantic_probabilities=scores, **options))
        traced = function.get_concrete_function(_softmax(logits), heat, offset)
    elif inputs == "logits":
        function = tf.function(lambda *args: panoptic_deeplab(*args, **options))
        traced = function.get_concrete_function(logits, heat, offset)
    elif inputs == "upsampled":
        function = tf.function(lambda *args: panoptic_deeplab(
            *args, output_size=(33, 45), **options))
        traced = function.get_concrete_function(logits, heat, offset)
    else:
        function = tf.function(
            lambda *args: panoptic_deeplab(*args, **options),
            input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)
                             for channels in (5, 1, 2)])
        traced = function.get_concrete_function()
        _assert_same(function(logits, heat, offset), numpy_reference.postprocess(
            logits, heat, offset, scores_are_logits=True, center_threshold=0.1, **options))
    assert graph_dtypes.ops_producing(traced, [tf.float64, tf.int64]) == []
    # The walk reached the grouping loop inside the compiled function.
    assert any("while_body" in path for path, _ in graph_dtypes.walk_ops(traced.graph))


@tf.function(jit_compile=True)
def _compiled_distance(y, x, center_y, center_x, offset_y, offset_x):
    """The grouping distance, compiled by XLA (which may fuse multiply-adds)."""
    return grouping.squared_distance(grouping.difference(y, center_y, offset_y),
                                     grouping.difference(x, center_x, offset_x))


def _oracle_distance(y, x, center_y, center_x, offset_y, offset_x):
    return numpy_reference.squared_distance((y - center_y).astype(np.float32) + offset_y,
                                            (x - center_x).astype(np.float32) + offset_x)


def test_distance_is_bit_identical_to_numpy_under_xla():
    """Offsets of magnitude 1e-12 to 1e5, special values, and the 2**-32 flush limit."""
    rng = np.random.default_rng(11)
    size = 1 << 20
    y, x = (rng.integers(0, 2048, size).astype(np.int32) for _ in range(2))
    center_y, center_x = (rng.integers(0, 2048, size).astype(np.int32) for _ in range(2))
    magnitude = 10.0 ** rng.uniform(-12, 5, (2, size))
    offset_y, offset_x = (rng.choice([-1, 1], (2, size)) * magnitude).astype(np.float32)
    # A quarter of the pixels sit at their center (dy = offset): tiny differences.
    at_center = rng.random(size) < 0.25
    center_y[at_center], center_x[at_center] = y[at_center], x[at_center]
    special = np.array([0.0, -0.0, 1e-3, -1e-3, 5000.0, 5000.5, 1e-40, 2.0 ** -32,
                        np.nextafter(np.float32(2.0 ** -32), np.float32(0)),
                        -(2.0 ** -32), 2.0 ** -31 + 2.0 ** -50], np.float32)
    offset_y[:special.size] = special
    offset_x[:special.size] = special[::-1]
    center_y[:special.size], center_x[:special.size] = y[:special.size], x[:special.size]
    args = (y, x, center_y, center_x, offset_y, offset_x)
    compiled, oracle = _compiled_distance(*args).numpy(), _oracle_distance(*args)
    assert compiled.dtype == oracle.dtype == np.float32
    np.testing.assert_array_equal(compiled.view(np.uint32), oracle.view(np.uint32))
    # And it is dy**2 + dx**2: at most 3 roundings from the float64 value.
    dy, dx = (np.where(np.abs(d) < 2.0 ** -32, 0, d).astype(np.float64) for d in (
        (y - center_y).astype(np.float32) + offset_y,
        (x - center_x).astype(np.float32) + offset_x))
    exact = dy * dy + dx * dx
    np.testing.assert_array_less(np.abs(compiled - exact), 3.01 * 2.0 ** -24 * exact + 1e-300)


def test_near_ties_match_the_oracle():
    """Predicted centers within a few ulps of the bisector of two centers.

    Centers A (5, 20) and B (11, 41) (ids 1 and 2) and a far C (22, 60). Each
    pixel's offset points at a point of the A-B bisector, moved by a few float32
    ulps, so A's and B's distances differ by about an ulp or tie exactly.
    """
    height, width = 24, 64
    rng = np.random.default_rng(13)
    a, b = np.array([5.0, 20.0]), np.array([11.0, 41.0])
    normal = np.array([-(b - a)[1], (b - a)[0]]) / np.hypot(*(b - a))
    along = rng.uniform(-30, 30, (height, width)) * 10.0 ** rng.uniform(-3, 0, (height, width))
    target = (a + b) / 2 + along[..., None] * normal
    pixels = np.stack(np.mgrid[:height, :width], axis=-1)
    offset = (target - pixels).astype(np.float32)
    steps = rng.integers(-3, 4, offset.shape).astype(np.int32)
    offset = (offset.view(np.int32) + steps).view(np.float32)[None]
    logits = np.zeros((1, height, width, 2), np.float32)
    logits[..., 1] = 1  # every pixel is a thing
    heat = np.full((1, height, width, 1), 0.05, np.float32)
    heat[0, 5, 20, 0], heat[0, 11, 41, 0], heat[0, 22, 60, 0] = 0.9, 0.8, 0.7
    options = dict(thing_class_ids=(1,), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=0, nms_kernel=3, keep_k_centers=5)
    result = panoptic_deeplab(logits, heat, offset, tile_size=8, **options)
    expected = numpy_reference.postprocess(logits, heat, offset, scores_are_logits=True,
                                           center_threshold=0.1, **options)
    _assert_same(result, expected)
    # The case is what it claims: exact float32 ties, and both orders among near-ties.
    y, x = pixels[..., 0], pixels[..., 1]
    to_a, to_b = (_oracle_distance(y, x, np.int32(c[0]), np.int32(c[1]), offset[0, ..., 0],
                                   offset[0, ..., 1]) for c in (a, b))
    close = np.abs(to_a - to_b) <= 2 * np.spacing(to_a)
    assert (to_a == to_b).sum() > 10
    assert (close & (to_a < to_b)).sum() > 10 and (close & (to_b < to_a)).sum() > 10
    np.testing.assert_array_equal(expected[common.INSTANCE][0], np.where(to_b < to_a, 2, 1))


@tf.function(jit_compile=True)
def _culled_and_full_search(y, x, offset, mask, points, count):
    """Per tile: nearest centers with culling and with a search over every real center."""
    def one_tile(tile):
        y, x, offset, mask, points, count = tile
        arguments = (y, x, offset[..., 0], offset[..., 1])
        order, num = grouping.candidate_centers(*arguments, mask, points, count)
        culled = grouping.nearest_center(*arguments, points, order, num)
        full = grouping.nearest_center(*arguments, points, tf.range(points.shape[0]), count)
        return tf.where(mask, culled, 0), tf.where(mask, full, 0), num

    return tf.map_fn(one_tile, (y, x, offset, mask, points, count),
                     fn_output_signature=(tf.int32, tf.int32, tf.int32))


def test_culling_equals_a_search_over_all_centers():
    """Culling never changes the nearest center: random 8x8 tiles against a full search.

    Every other tile is a single pixel whose predicted center lies on the
    bisector of centers 0 and 1 (up to float32 rounding): the culling bounds of
    the two are then within rounding of each other, and only the margins keep
    the right one (without the span slack, some of these tiles fail).
    """
    rng = np.random.default_rng(17)
    num_tiles, size, keep_k = 400, 8, 8
    corner = rng.integers(1000, 2000, (num_tiles, 2))
    y = (corner[:, :1, None] + np.arange(size)[:, None]).astype(np.int32)
    x = (corner[:, 1:, None] + np.arange(size)[None, :]).astype(np.int32)
    spread = rng.choice([3, 40, 300], num_tiles)[:, None, None]
    points = (corner[:, None] + rng.integers(-1000, 1000, (num_tiles, keep_k, 2))
              * spread // 1000).astype(np.int32)
    count = rng.integers(2, keep_k + 1, num_tiles).astype(np.int32)
    points[np.arange(keep_k) >= count[:, None]] = -1
    magnitude = 10.0 ** rng.uniform(-3, 2.5, (num_tiles, 1, 1, 1))
    offset = rng.standard_normal((num_tiles, size, size, 2)) * magnitude
    offset[::4] = np.round(offset[::4])  # integer offsets: exact ties
    mask = rng.random((num_tiles, size, size)) < 0.5
    for tile in range(1, num_tiles, 2):
        pixel = rng.integers(0, size, 2)
        mask[tile] = False
        mask[tile, pixel[0], pixel[1]] = True
        first, second = points[tile, :2]
        normal = np.array([first[1] - second[1], second[0] - first[0]])
        target = (first + second) / 2 + rng.uniform(-0.3, 0.3) * normal
        offset[tile] = target - [y[tile, pixel[0], 0], x[tile, 0, pixel[1]]]
    culled, full, num = _culled_and_full_search(y, x, offset.astype(np.float32), mask,
                                                points, count)
    np.testing.assert_array_equal(culled, full)
    assert np.mean(num / count) < 0.6  # culling does drop centers


@pytest.mark.parametrize("change, message", [
    (dict(nms_kernel=4), "odd"),
    (dict(keep_k_centers=1000), "label_divisor"),
    (dict(thing_class_ids=()), "thing_class_ids"),
    (dict(semantic_probabilities=np.zeros((1, 4, 4, 3), np.float32)), "exactly one"),
    (dict(output_size=(9, 9, 3)), r"output_size must be \(height, width\)"),
    (dict(output_size=(0, 9)), "output_size must be positive"),
])
def test_rejects_bad_options(change, message):
    options = dict(thing_class_ids=(1,), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=4)
    options.update(change)
    with pytest.raises(ValueError, match=message):
        panoptic_deeplab(np.zeros((1, 4, 4, 3), np.float32),
                         np.zeros((1, 4, 4, 1), np.float32),
                         np.zeros((1, 4, 4, 2), np.float32), **options)


def test_heads_to_upsample_must_share_their_size():
    with pytest.raises(ValueError, match="the heads must share one height and width"):
        panoptic_deeplab(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4, 5, 1), np.float32),
                         np.zeros((1, 4, 4, 2), np.float32), thing_class_ids=(1,),
                         label_divisor=1000, ignore_label=255, stuff_area_limit=4,
                         output_size=(13, 13))


def test_benchmark_finds_the_planted_center_and_times_the_forward_pass(capsys):
    from deeplab2.benchmarks import postprocess as benchmark

    assert benchmark.main(["--size", "129", "257", "--centers", "1", "--repeats", "1",
                           "--warmup", "0", "--forward_backbone", "mobilenet_v3_small"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["centers_found"] == 1
    assert report["heads"] == [1, 33, 65, 19]
    # The upsampling inside predicts what the full-resolution baseline does.
    assert report["same_panoptic_as_baseline"] is True
    assert report["speedup_over_baseline"] == pytest.approx(
        report["full_resolution_baseline_ms"] / report["median_ms"], rel=0.05)
    assert set(report["stages_ms"]) == {"upsampled_argmax", "upsample_heads", "centers",
                                        "group_and_score_tiles"}
    assert all(ms > 0 for ms in report["stages_ms"].values())
    # One planted instance: some of the 5 x 9 tiles of 32 x 32 pixels, not all.
    assert 1 <= report["thing_tiles"] < 45
    assert report["forward_backbone"] == "mobilenet_v3_small"
    assert report["fraction_of_network"] == pytest.approx(
        report["median_ms"] / report["network_median_ms"], rel=0.05, abs=1e-3)
