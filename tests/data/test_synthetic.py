"""The built-in synthetic dataset: deterministic, varied, and self-consistent."""
import numpy as np
import pytest

from deeplab2.data import synthetic
from deeplab2.data.dataset_info import get_dataset_info

INFO = get_dataset_info("synthetic")


def test_same_seed_same_scene_and_different_seeds_or_splits_differ():
    a = synthetic.generate_scene(3, "train", 5)
    b = synthetic.generate_scene(3, "train", 5)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    assert a.segments == b.segments
    assert not np.array_equal(a.image, synthetic.generate_scene(4, "train", 5).image)
    assert not np.array_equal(a.image, synthetic.generate_scene(3, "val", 5).image)


def test_segments_describe_the_label_exactly():
    for index in range(20):
        scene = synthetic.generate_scene(0, "val", index, height=96, width=128)
        assert scene.image.shape == (96, 128, 3) and scene.image.dtype == np.uint8
        assert scene.panoptic.dtype == np.int32
        ids, counts = np.unique(scene.panoptic, return_counts=True)
        labeled = {int(i): int(c) for i, c in zip(ids, counts)
                   if i != INFO.ignore_panoptic_id}
        by_id = {}
        for seg in scene.segments:
            by_id[seg.id] = by_id.get(seg.id, 0) + seg.area
            assert seg.category == seg.id // INFO.label_divisor
            instance = seg.id % INFO.label_divisor
            assert (instance == 0) == (seg.is_crowd or not INFO.is_thing(seg.category))
        assert by_id == labeled
        for cls in INFO.thing_ids:  # instance ids run 1..n per class
            instances = sorted(i % INFO.label_divisor for i in labeled
                               if i // INFO.label_divisor == cls and i % INFO.label_divisor)
            assert instances == list(range(1, len(instances) + 1))


def test_scenes_cover_what_the_dataset_promises():
    scenes = [synthetic.generate_scene(0, "train", i) for i in range(40)]
    classes = {s.category for scene in scenes for s in scene.segments}
    assert set(INFO.stuff_ids) <= classes and set(INFO.thing_ids) <= classes
    areas = [s.area for scene in scenes for s in scene.segments
             if INFO.is_thing(s.category) and not s.is_crowd]
    assert min(areas) < 64 * 64 / 16 and max(areas) > 64 * 64
    assert any(s.is_crowd for scene in scenes for s in scene.segments)
    assert sum((scene.panoptic == INFO.ignore_panoptic_id).any() for scene in scenes) >= 10
    # Occlusion: some instance is not the full shape it was drawn as, i.e. some
    # pair of instances touch.
    touching = 0
    for scene in scenes:
        p = scene.panoptic
        horizontal = (p[:, 1:] != p[:, :-1]) & (p[:, 1:] % 1000 > 0) & (p[:, :-1] % 1000 > 0)
        touching += int(horizontal.any())
    assert touching >= 5


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split"):
        synthetic.generate_scene(0, "test", 0)
    with pytest.raises(ValueError, match="32x32"):
        synthetic.generate_scene(0, "train", 0, height=16, width=64)
