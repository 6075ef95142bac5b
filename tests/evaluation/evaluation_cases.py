"""Real COCO panoptic samples and perturbed predictions of them, as files.

A sample image is (annotation, ids): its ground-truth annotation (image_id,
file_name, segments_info) and HxW int64 segment ids. Perturbations map
(ids, segments, rng, categories) to a new (ids, segments); `write_set` writes
a list of them as a COCO panoptic folder + JSON.
"""
import json
import pathlib
from typing import Dict, List, Tuple

import numpy as np

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation import coco_format

# (folder, json, png folder) of the real samples under shared/data.
SAMPLES = {
    "coco_panoptic": ("coco_panoptic", "panoptic_examples.json", "panoptic"),
    "coco_cats": ("coco_cats", "panoptic_annotations.json", "panoptic"),
    "street_800": ("street_800", "gtFine/cityscapes_panoptic_dummy_trainId.json",
                   "gtFine/cityscapes_panoptic_dummy_trainId"),
}


def load_sample(root: pathlib.Path, name: str) -> Tuple[Dict, List]:
    """(ground-truth json dict, [(annotation, ids)]) of a sample dataset.

    Image ids become integers 1, 2, ... (street_800 names its image with a
    string, which the hotcoco oracle rejects). street_800's category ids are
    Cityscapes train ids: its categories are written from the descriptor.
    """
    folder, json_name, png_dir = SAMPLES[name]
    data = json.loads((root / folder / json_name).read_text())
    if name == "street_800":
        info = get_dataset_info("cityscapes")
        data["categories"] = [
            {"id": k, "name": n, "isthing": int(info.is_thing(k))}
            for k, n in enumerate(info.class_names)]
    number = {image["id"]: k + 1 for k, image in enumerate(data["images"])}
    data["images"] = [dict(image, id=number[image["id"]])
                      for image in data["images"]]
    data["annotations"] = [dict(a, image_id=number[a["image_id"]])
                           for a in data["annotations"]]
    images = [(a, coco_format.read_panoptic_png(
        str(root / folder / png_dir / a["file_name"])))
        for a in data["annotations"]]
    return data, images


def write_set(directory: pathlib.Path, gt: Dict, images: List,
              with_categories: bool = True) -> Tuple[str, str]:
    """Writes [(annotation, ids)] as `directory`.json + PNG folder.

    Segment areas and boxes are recomputed from the pixels, and segments
    without pixels are dropped. Returns (json path, png folder).
    """
    directory.mkdir(parents=True, exist_ok=True)
    annotations = []
    for annotation, ids in images:
        info = []
        for segment in annotation["segments_info"]:
            mask = ids == segment["id"]
            area = int(mask.sum())
            if area == 0:
                continue
            ys, xs = np.nonzero(mask)
            info.append({"id": segment["id"],
                         "category_id": segment["category_id"],
                         "iscrowd": segment.get("iscrowd", 0), "area": area,
                         "bbox": [int(xs.min()), int(ys.min()),
                                  int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)]})
        coco_format.write_panoptic_png(str(directory / annotation["file_name"]),
                                       ids)
        annotations.append(dict(annotation, segments_info=info))
    data = {"images": gt["images"], "annotations": annotations}
    if with_categories:
        data["categories"] = gt["categories"]
    json_path = directory.with_suffix(".json")
    json_path.write_text(json.dumps(data))
    return str(json_path), str(directory)


def _segments(annotation) -> List[Dict]:
    return [dict(s) for s in annotation["segments_info"]]


def _new_id(ids: np.ndarray, segments: List[Dict]) -> int:
    return max([int(ids.max())] + [s["id"] for s in segments]) + 1


def identity(ids, segments, rng, categories):
    return ids.copy(), segments


def merge(ids, segments, rng, categories):
    """Merges segments of a category into its first one, and one pair of
    different categories."""
    ids = ids.copy()
    first = {}
    keep = []
    for s in segments:
        if s["category_id"] in first:
            ids[ids == s["id"]] = first[s["category_id"]]
        else:
            first[s["category_id"]] = s["id"]
            keep.append(s)
    if len(keep) >= 2:
        ids[ids == keep[1]["id"]] = keep[0]["id"]
        keep = keep[:1] + keep[2:]
    return ids, keep


def split(ids, segments, rng, categories, crowd_only=False):
    """Splits every segment (or every crowd segment, which stays crowd) at its
    median column; the right part gets a new id."""
    ids = ids.copy()
    out = list(segments)
    next_id = _new_id(ids, segments)
    cols = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    for s in segments:
        mask = ids == s["id"]
        if mask.sum() < 50 or (crowd_only and not s.get("iscrowd")):
            continue
        right = mask & (cols > np.median(cols[mask]))
        ids[right] = next_id
        out.append(dict(s, id=next_id))
        next_id += 1
    return ids, out


def void_strips(ids, segments, rng, categories):
    ids = ids.copy()
    ids[5::37] = 0
    ids[:, 11::29] = 0
    ids[:, 40:52] = 0
    return ids, segments


def crowd_overlaps(ids, segments, rng, categories):
    """Predicts each crowd region (grown by 3 px) as one segment of its own
    category, and a second one at a wrong category when there are two."""
    ids = ids.copy()
    out = [s for s in segments if not s.get("iscrowd")]
    next_id = _new_id(ids, segments)
    for k, s in enumerate(s for s in segments if s.get("iscrowd")):
        mask = _grow(ids == s["id"], 3)
        category = s["category_id"] if k % 2 == 0 else 2
        ids[mask] = next_id
        out.append({"id": next_id, "category_id": category, "iscrowd": 0})
        next_id += 1
    return ids, out


def relabel_stuff(ids, segments, rng, categories):
    """Gives every other stuff segment another stuff category."""
    stuff = [c["id"] for c in categories if not c["isthing"]]
    out = []
    for k, s in enumerate(segments):
        s = dict(s, iscrowd=0)
        if s["category_id"] in stuff and k % 2 == 0:
            others = [c for c in stuff if c != s["category_id"]]
            s["category_id"] = int(rng.choice(others))
        out.append(s)
    return ids.copy(), out


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(radius):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def erode(radius):
    def erode_boundaries(ids, segments, rng, categories):
        """Pixels within `radius` of another id become void."""
        boundary = np.zeros(ids.shape, bool)
        boundary[1:] |= ids[1:] != ids[:-1]
        boundary[:-1] |= ids[1:] != ids[:-1]
        boundary[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        boundary[:, :-1] |= ids[:, 1:] != ids[:, :-1]
        out = ids.copy()
        out[_grow(boundary, radius - 1)] = 0
        return out, [dict(s, iscrowd=0) for s in segments]
    return erode_boundaries


def random_deletions(ids, segments, rng, categories):
    """Deletes 40% of the segments (to void) and shifts the map by (3, -4)."""
    ids = np.roll(ids, (3, -4), (0, 1))
    out = []
    for s in segments:
        if rng.random() < 0.4:
            ids[ids == s["id"]] = 0
        else:
            out.append(dict(s, iscrowd=0))
    return ids, out


PERTURBATIONS = {
    "exact": identity, "merged": merge, "split": split,
    "void_strips": void_strips, "crowd_overlaps": crowd_overlaps,
    "relabelled_stuff": relabel_stuff, "erosion_2": erode(2),
    "erosion_6": erode(6), "random_deletions": random_deletions,
}


def perturb(images: List, name: str, seed: int, categories) -> List:
    """Applies one perturbation to every image; predictions have no crowd."""
    rng = np.random.default_rng(seed)
    out = []
    for annotation, ids in images:
        new_ids, segments = PERTURBATIONS[name](
            ids, _segments(annotation), rng, categories)
        segments = [dict(s, iscrowd=0) for s in segments]
        out.append((dict(annotation, segments_info=segments), new_ids))
    return out
