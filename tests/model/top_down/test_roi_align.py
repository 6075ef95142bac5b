"""Aligned RoIAlign, both forms and the FPN level choice, vs a numpy loop of the spec's rule."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down.boxes import roi_levels
from deeplab2.model.top_down import roi_align as roi_align_module
from deeplab2.model.top_down.roi_align import multilevel_roi_align, roi_align

TOLERANCE = 1e-5


def _oracle_sample(feature, y, x):
    """Bilinear sample of an [H, W, C] map at (y, x) under the spec's boundary rule."""
    height, width = feature.shape[:2]
    if y < -1 or y > height or x < -1 or x > width:
        return np.zeros(feature.shape[2])
    corners = []
    for coord, size in ((y, height), (x, width)):
        coord = max(coord, 0.0)
        low = int(np.floor(coord))
        if low >= size - 1:
            corners.append((size - 1, size - 1, 0.0))
        else:
            corners.append((low, low + 1, coord - low))
    (y_low, y_high, fy), (x_low, x_high, fx) = corners
    return ((1 - fy) * (1 - fx) * feature[y_low, x_low] + (1 - fy) * fx * feature[y_low, x_high]
            + fy * (1 - fx) * feature[y_high, x_low] + fy * fx * feature[y_high, x_high])


def _oracle(feature, boxes, output_size, stride, sampling_ratio=2):
    """[N, P, P, C] float64: plain loops over boxes, bins and samples."""
    feature = np.asarray(feature, np.float64)
    samples = output_size * sampling_ratio
    out = np.zeros((len(boxes), output_size, output_size, feature.shape[2]))
    for n, box in enumerate(np.asarray(boxes, np.float64)):
        x0, y0, x1, y1 = box / stride - 0.5
        for i in range(output_size):
            for j in range(output_size):
                total = 0.0
                for a in range(sampling_ratio):
                    y = y0 + (i * sampling_ratio + a + 0.5) * (y1 - y0) / samples
                    for b in range(sampling_ratio):
                        x = x0 + (j * sampling_ratio + b + 0.5) * (x1 - x0) / samples
                        total = total + _oracle_sample(feature, y, x)
                out[n, i, j] = total / sampling_ratio ** 2
    return out


def _boxes(rng, image_h, image_w):
    """[16, 4] boxes: 0-3 inside, 4-8 partly off, 9-10 off, 11-13 sub-pixel, 14-15 zero size."""
    def box(x0, y0, w, h):
        return [x0, y0, x0 + w, y0 + h]

    def uniform(low, high):
        return rng.uniform(low, high)

    rows = []
    for _ in range(4):  # inside the image
        rows.append(box(uniform(0, image_w / 2), uniform(0, image_h / 2),
                        uniform(1, image_w / 2), uniform(1, image_h / 2)))
    for _ in range(2):  # partly off: over the top-left or bottom-right edges, or both
        rows.append(box(uniform(-12, 3), uniform(-12, 3), uniform(5, 20), uniform(5, 20)))
        rows.append(box(uniform(image_w - 12, image_w), uniform(image_h - 12, image_h),
                        uniform(5, 20), uniform(5, 20)))
    rows.append(box(-10.3, -7.1, image_w + 21.7, image_h + 13.9))
    rows.append(box(image_w + 9.1, 3.3, 6.2, 8.4))  # fully off, right
    rows.append(box(2.2, -30.7, 9.5, 6.6))  # fully off, above
    for _ in range(3):  # sub-pixel
        rows.append(box(uniform(0, image_w), uniform(0, image_h), uniform(0, 1), uniform(0, 1)))
    rows.append(box(uniform(0, image_w), uniform(0, image_h), 0.0, 0.0))  # a point
    rows.append(box(uniform(0, image_w), uniform(0, image_h), 0.0, uniform(2, 9)))  # a line
    return np.array(rows, np.float32)


def _call(method, jit, *args, function=roi_align, **kwargs):
    """Runs `function` eagerly, or in a tf.function with XLA when `jit`."""
    def run(*tensors):
        return function(*tensors, **kwargs, method=method)

    if jit:
        run = tf.function(run, jit_compile=True)
    return run(*args).numpy()


FORMS = [("gather", True), ("gather", False), ("crop_and_resize", False)]


@pytest.mark.parametrize("method, jit", FORMS)
@pytest.mark.parametrize("output_size", [7, 14])
def test_single_level_matches_oracle(method, jit, output_size):
    rng = np.random.default_rng(output_size)
    stride, height, width, channels = 4, 9, 13, 3
    features = rng.standard_normal((2, height, width, channels)).astype(np.float32)
    boxes = np.stack([_boxes(rng, height * stride, width * stride) for _ in range(2)])
    got = _call(method, jit, tf.constant(features), tf.constant(boxes), output_size, stride)
    assert got.shape == (2, len(boxes[0]), output_size, output_size, channels)
    for b in range(2):
        want = _oracle(features[b], boxes[b], output_size, stride)
        np.testing.assert_allclose(got[b], want, rtol=0, atol=TOLERANCE)
    assert not np.any(got[:, 9:11])  # fully off the map
    assert np.all(np.abs(got[:, 11:]).max(axis=(2, 3, 4)) > 0)  # sub-pixel and zero-size


@pytest.mark.parametrize("method, jit", FORMS)
def test_single_image_and_mask_target_size(method, jit):
    """Unbatched [N, 4] boxes on an [H, W, C] map, stride 1, P = 28, S = 2."""
    rng = np.random.default_rng(3)
    features = rng.standard_normal((6, 5, 1)).astype(np.float32)
    boxes = _boxes(rng, 6, 5)[[0, 4, 8, 12, 14, 15]]
    got = _call(method, jit, tf.constant(features), tf.constant(boxes), 28, 1)
    np.testing.assert_allclose(got, _oracle(features, boxes, 28, 1), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method, jit", FORMS)
def test_multilevel_uses_each_boxes_level(method, jit):
    rng = np.random.default_rng(5)
    image_h, image_w, channels = 96, 160, 2
    # One stride-64 map (P6) is passed too: it must be ignored.
    features = {level: rng.standard_normal(
        (2, image_h // 2 ** level, image_w // 2 ** level, channels)).astype(np.float32)
        for level in range(2, 7)}
    sides = {2: (8, 100), 3: (120, 210), 4: (240, 430), 5: (460, 700)}
    boxes = np.zeros((2, 12, 4), np.float32)
    levels = np.zeros((2, 12), np.int64)
    for b in range(2):
        for n in range(12):
            level = 2 + (n + b) % 4
            w = rng.uniform(*sides[level])
            h = rng.uniform(*sides[level])
            area = w * h
            w, h = w * 1.3, area / (w * 1.3)  # non-square, same area
            x0 = rng.uniform(-w / 2, image_w - w / 2)
            y0 = rng.uniform(-h / 2, image_h - h / 2)
            boxes[b, n] = [x0, y0, x0 + w, y0 + h]
            levels[b, n] = level
    levels_got = roi_levels(tf.constant(boxes)).numpy()
    np.testing.assert_array_equal(levels_got, levels)
    got = _call(method, jit, {k: tf.constant(v) for k, v in features.items()},
                tf.constant(boxes), 7, function=multilevel_roi_align)
    for b in range(2):
        for n in range(12):
            level = levels[b, n]
            want = _oracle(features[level][b], boxes[b, n:n + 1], 7, 2 ** level)[0]
            np.testing.assert_allclose(got[b, n], want, rtol=0, atol=TOLERANCE)


def _oracle_gradient(shape, boxes, upstream, output_size, stride, sampling_ratio=2):
    """d(sum(pooled * upstream)) / d(map) of one image: each sample's bilinear
    weights (the spec's rule, as `_oracle_sample`) times its bin's upstream / S^2."""
    height, width, _ = shape
    grad = np.zeros(shape)
    samples = output_size * sampling_ratio
    for n, box in enumerate(np.asarray(boxes, np.float64)):
        x0, y0, x1, y1 = box / stride - 0.5
        for i in range(samples):
            y = y0 + (i + 0.5) * (y1 - y0) / samples
            for j in range(samples):
                x = x0 + (j + 0.5) * (x1 - x0) / samples
                if y < -1 or y > height or x < -1 or x > width:
                    continue
                corners = []
                for coord, size in ((y, height), (x, width)):
                    low = int(np.floor(max(coord, 0.0)))
                    corners.append((size - 1, size - 1, 0.0) if low >= size - 1
                                   else (low, low + 1, max(coord, 0.0) - low))
                (ya, yb, fy), (xa, xb, fx) = corners
                g = upstream[n, i // sampling_ratio, j // sampling_ratio] / sampling_ratio ** 2
                grad[ya, xa] += (1 - fy) * (1 - fx) * g
                grad[ya, xb] += (1 - fy) * fx * g
                grad[yb, xa] += fy * (1 - fx) * g
                grad[yb, xb] += fy * fx * g
    return grad


@pytest.mark.parametrize("method, jit", FORMS)
def test_gradients_match_the_oracle(method, jit):
    rng = np.random.default_rng(7)
    features = tf.constant(rng.standard_normal((2, 9, 13, 3)).astype(np.float32))
    boxes = np.stack([_boxes(rng, 36, 52) for _ in range(2)])
    upstream = rng.standard_normal((2, 16, 7, 7, 3)).astype(np.float32)

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = roi_align(features, tf.constant(boxes), 7, 4, method=method)
            loss = tf.reduce_sum(pooled * upstream)
        return tape.gradient(loss, features)

    got = (tf.function(gradient, jit_compile=True) if jit else gradient)().numpy()
    assert np.count_nonzero(got) > got.size // 2
    for b in range(2):
        want = _oracle_gradient((9, 13, 3), boxes[b], upstream[b], 7, 4)
        np.testing.assert_allclose(got[b], want, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("output_size, sampling_ratio, by_windows",
                         [(7, 2, True), (2, 1, False), (3, 2, False)])
def test_crop_and_resize_gradient_by_windows_and_by_corners(output_size, sampling_ratio,
                                                            by_windows, traced, monkeypatch):
    """Both sums of the crop_and_resize form's gradient equal the oracle's:
    windows when no box's samples span more than 2 P S pixels along an axis
    (7x7 bins of 2x2 samples on a 9x13 map: at most 13 < 28), each sample's
    corners otherwise (the image-sized box spans 13 pixels across 2 or 3 bins)."""
    windows_built = []
    original = roi_align_module._window_weights
    monkeypatch.setattr(roi_align_module, "_window_weights",
                        lambda *args: windows_built.append(1) or original(*args))
    rng = np.random.default_rng(11)
    features = tf.constant(rng.standard_normal((2, 9, 13, 3)).astype(np.float32))
    boxes = np.stack([_boxes(rng, 36, 52) for _ in range(2)])
    upstream = rng.standard_normal((2, 16, output_size, output_size, 3)).astype(np.float32)

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = roi_align(features, tf.constant(boxes), output_size, 4,
                               sampling_ratio=sampling_ratio, method="crop_and_resize")
            loss = tf.reduce_sum(pooled * upstream)
        return tape.gradient(loss, features)

    got = (tf.function(gradient) if traced else gradient)().numpy()
    if not traced:  # a traced tf.cond builds both sums
        assert bool(windows_built) == by_windows
    for b in range(2):
        want = _oracle_gradient((9, 13, 3), boxes[b], upstream[b], output_size, 4,
                                sampling_ratio)
        np.testing.assert_allclose(got[b], want, rtol=0, atol=TOLERANCE)


def test_multilevel_gradient_with_empty_levels():
    """Boxes only on P2 and P4: the maps of P3 and P5 get zero gradients (their
    partitions hold no box), P2 and P4 the oracle's."""
    rng = np.random.default_rng(13)
    sizes = {2: (24, 40), 3: (12, 20), 4: (6, 10), 5: (3, 5)}
    maps = {level: rng.standard_normal((1, h, w, 2)).astype(np.float32)
            for level, (h, w) in sizes.items()}
    boxes = np.array([[[10.0, 12.0, 50.0, 40.0], [3.0, 5.0, 60.0, 70.0],
                       [-60.0, -50.0, 240.0, 150.0]]], np.float32)
    np.testing.assert_array_equal(roi_levels(tf.constant(boxes)).numpy()[0], [2, 2, 4])
    upstream = rng.standard_normal((1, 3, 7, 7, 2)).astype(np.float32)
    features = {level: tf.constant(value) for level, value in maps.items()}
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = multilevel_roi_align(features, tf.constant(boxes), 7, method="crop_and_resize")
        loss = tf.reduce_sum(pooled * upstream)
    got = tape.gradient(loss, features)
    for level in (3, 5):
        assert not np.any(got[level].numpy())
    for level, rows in ((2, [0, 1]), (4, [2])):
        want = _oracle_gradient(maps[level][0].shape, boxes[0, rows], upstream[0, rows], 7,
                                2 ** level)
        assert np.count_nonzero(want) >= 100
        np.testing.assert_allclose(got[level][0].numpy(), want, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("jit", [False, True])
def test_auto_takes_the_xla_form_only_under_xla(jit, monkeypatch):
    taken = []
    for name in ("_gather_form", "_crop_and_resize_form"):
        original = getattr(roi_align_module, name)
        monkeypatch.setattr(roi_align_module, name,
                            lambda *args, _name=name, _f=original: taken.append(_name)
                            or _f(*args))
    _call("auto", jit, tf.zeros([1, 8, 8, 2]), tf.constant([[[0.0, 0.0, 4.0, 4.0]]]), 7, 4)
    assert taken == (["_gather_form"] if jit else ["_crop_and_resize_form"])


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="method"):
        roi_align(tf.zeros([4, 4, 1]), tf.zeros([1, 4]), 7, 4, method="bilinear")
