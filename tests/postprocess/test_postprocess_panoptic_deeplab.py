"""Panoptic-DeepLab post-processing against the plain numpy oracle and a hand-worked case."""
import importlib.util
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.postprocess import panoptic_deeplab


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


@pytest.mark.parametrize("change, message", [
    (dict(nms_kernel=4), "odd"),
    (dict(keep_k_centers=1000), "label_divisor"),
    (dict(thing_class_ids=()), "thing_class_ids"),
    (dict(semantic_probabilities=np.zeros((1, 4, 4, 3), np.float32)), "exactly one"),
])
def test_rejects_bad_options(change, message):
    options = dict(thing_class_ids=(1,), label_divisor=1000, ignore_label=255,
                   stuff_area_limit=4)
    options.update(change)
    with pytest.raises(ValueError, match=message):
        panoptic_deeplab(np.zeros((1, 4, 4, 3), np.float32),
                         np.zeros((1, 4, 4, 1), np.float32),
                         np.zeros((1, 4, 4, 2), np.float32), **options)


def test_benchmark_finds_the_planted_center_and_times_the_forward_pass(capsys):
    from deeplab2.benchmarks import postprocess as benchmark

    assert benchmark.main(["--size", "129", "257", "--centers", "1", "--repeats", "1",
                           "--warmup", "0", "--forward_backbone", "mobilenet_v3_small"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["centers_found"] == 1
    assert report["forward_backbone"] == "mobilenet_v3_small"
    assert report["fraction_of_forward"] == pytest.approx(
        report["median_ms"] / report["forward_median_ms"], rel=0.05, abs=1e-3)
