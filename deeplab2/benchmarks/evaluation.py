"""Benchmark: PQ over prediction / ground-truth pairs of 1024x2048, in ms per image.

Writes synthetic Cityscapes-like pairs (stuff bands, poles, ~30 cars and
persons, a crowd region, void; predictions with shifted boundaries, missed,
split and spurious instances) as COCO panoptic files, then times in the same
run: our file evaluation with 1 and 2 worker threads, our in-memory
evaluator on integer maps, PNG decoding alone (the floor of any file-based
tool), hotcoco's `pq_compute` and, given a Python with panopticapi
(e.g. a throwaway venv with panopticapi-lite), panopticapi's `pq_compute`.
Prints JSON: medians, ratios and the largest difference of the metrics.

  python scripts/benchmark.py evaluation --images=20 --repeats=3 \
      [--panopticapi_python=/tmp/panopticapi_venv/bin/python]
"""
import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
from deeplab2.evaluation.evaluator import PanopticEvaluator

INFO = get_dataset_info("cityscapes")
TARGET_MS = 16.0
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY = (
    0, 1, 2, 5, 7, 8, 9, 10)
PERSON, CAR = 11, 13
VOID = INFO.ignore_panoptic_id

_PANOPTICAPI_SNIPPET = """
import contextlib, io, json, sys, time
from panopticapi.evaluation import pq_compute
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    result = pq_compute(*sys.argv[1:5])
print(json.dumps({"seconds": time.perf_counter() - start, "result": result}))
"""


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


def make_scene(seed: int, height: int = 1024, width: int = 2048
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(ground truth, prediction) int32 panoptic maps of one street scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:height, :width]
    wave = 30 * np.sin(xx / 170 + rng.uniform(0, 6))
    horizon = 0.45 * height + wave
    gt = np.full((height, width), ROAD * 1000, np.int32)
    gt[yy < horizon + 0.12 * height] = SIDEWALK * 1000
    gt[yy < horizon] = BUILDING * 1000
    trees = (np.sin(xx / 90 + rng.uniform(0, 6)) > 0.4) & (yy < horizon)
    gt[trees] = VEGETATION * 1000
    gt[yy < horizon - 0.2 * height + 2 * wave] = SKY * 1000
    for x in rng.integers(0, width - 12, 6):
        top = int(rng.integers(height // 6, height // 3))
        gt[top:int(0.6 * height), x:x + 10] = POLE * 1000
        gt[top:top + 40, x - 15:x + 25] = SIGN * 1000
    gt[_ellipse(yy, xx, 0.55 * height, rng.uniform(0.2, 0.8) * width,
                40, 160)] = CAR * 1000  # crowd of cars
    for k in range(30):
        cls = CAR if k % 3 else PERSON
        cy = rng.uniform(0.45, 0.85) * height
        scale = (cy / height - 0.3) * 2
        ry, rx = ((40, 90) if cls == CAR else (70, 22))
        gt[_ellipse(yy, xx, cy, rng.uniform(0, width), ry * scale,
                    rx * scale)] = cls * 1000 + k + 1
    gt[_ellipse(yy, xx, height, width / 2, 0.08 * height, 0.4 * width)] = VOID
    return gt, _predict(gt, rng)


def _predict(gt: np.ndarray, rng) -> np.ndarray:
    """A plausible prediction: shifted, with missed, split, spurious and
    relabelled segments."""
    pred = np.roll(gt, (3, -2), (0, 1))
    pred[pred == VOID] = ROAD * 1000
    pred[pred == CAR * 1000] = CAR * 1000 + 900  # the crowd as one car
    height, width = gt.shape
    xx = np.arange(width)
    for value in np.unique(pred[pred % 1000 > 0]):
        draw = rng.random()
        if draw < 0.15:
            pred[pred == value] = ROAD * 1000
        elif draw < 0.3:
            mask = pred == value
            cut = np.median(np.nonzero(mask)[1])
            pred[mask & (xx > cut)[None, :]] = value + 500
    yy, xx2 = np.ogrid[:height, :width]
    for k in range(3):
        pred[_ellipse(yy, xx2, rng.uniform(0.5, 0.9) * height,
                      rng.uniform(0, width), 50, 20)] = PERSON * 1000 + 800 + k
    if rng.random() < 0.5:
        pred[pred == VEGETATION * 1000] = TERRAIN * 1000
    return pred


def _coco_files(pairs, directory: str) -> Tuple[str, str, str, str]:
    """Writes the pairs as COCO panoptic gt / pred JSON + PNG folders."""
    paths = []
    for side, groundtruth in (("gt", True), ("pred", False)):
        folder = os.path.join(directory, side)
        os.makedirs(folder, exist_ok=True)
        annotations = [coco_format.write_panoptic(
            os.path.join(folder, f"{k:04d}.png"), pair[1 - groundtruth], INFO,
            k + 1, groundtruth) for k, pair in enumerate(pairs)]
        json_path = os.path.join(directory, f"{side}.json")
        with open(json_path, "w") as f:
            json.dump({"images": [{"id": k + 1} for k in range(len(pairs))],
                       "annotations": annotations,
                       "categories": coco_format.categories(INFO)}, f)
        paths += [json_path, folder]
    return tuple(paths)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _median_ms(run: Callable[[], object], repeats: int, images: int
               ) -> Tuple[float, float, object]:
    """Median wall and CPU milliseconds per image, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        result = run()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu_seconds() - start_cpu)
    return (1000 * statistics.median(walls) / images,
            1000 * statistics.median(cpus) / images, result)


def _max_difference(ours: Dict, other: Dict) -> float:
    """Largest difference of group and per-class PQ / SQ / RQ. Classes absent
    from the data count as 0 (panopticapi says 0, hotcoco -1, we None)."""
    diffs = [abs(ours[g][k] - other[g][k])
             for g in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq")]
    for key, values in other["per_class"].items():
        mine = ours["per_class"][int(key)]
        diffs += [abs((mine[k] or 0.0) - max(values[k] or 0.0, 0.0))
                  for k in ("pq", "sq", "rq")]
    return max(diffs)


def _decode_all(folders: Sequence[str]) -> None:
    for folder in folders:
        for name in os.listdir(folder):
            with Image.open(os.path.join(folder, name)) as image:
                image.load()


def _in_memory(pairs) -> Dict:
    evaluator = PanopticEvaluator(INFO)
    for gt, pred in pairs:
        evaluator.update(gt, pred)
    return evaluator.result()


def _panopticapi(python: str, files, repeats: int, images: int
                 ) -> Tuple[float, float, Dict]:
    """Times panopticapi's pq_compute in a subprocess. Its CPU time (with its
    worker processes) is that of the subprocess minus a run importing only."""
    command = [python, "-c", _PANOPTICAPI_SNIPPET, files[0], files[2],
               files[1], files[3]]
    _, startup_cpu, _ = _median_ms(lambda: subprocess.run(
        [python, "-c", "import panopticapi.evaluation"], check=True),
        repeats, images)
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        start_cpu = _cpu_seconds()
        out = subprocess.run(command, check=True, capture_output=True,
                             text=True).stdout
        cpus.append(1000 * (_cpu_seconds() - start_cpu) / images - startup_cpu)
        report = json.loads(out.strip().splitlines()[-1])
        walls.append(1000 * report["seconds"] / images)
        result = report["result"]
    return statistics.median(walls), statistics.median(cpus), result


def run(images: int, repeats: int, height: int, width: int,
        panopticapi_python: Optional[str], work_dir: Optional[str]) -> Dict:
    """Runs the benchmark; returns the report dict."""
    pairs = [make_scene(seed, height, width) for seed in range(images)]
    with tempfile.TemporaryDirectory(dir=work_dir) as directory:
        files = _coco_files(pairs, directory)
        ms, cpu, results = {}, {}, {}

        def measure(name, job):
            ms[name], cpu[name], result = _median_ms(job, repeats, images)
            return result

        for workers in (1, 2):
            results[workers] = measure(
                f"ours_files_{workers}_workers",
                lambda: evaluate_coco_panoptic(*files, num_workers=workers))
        memory = measure("ours_in_memory", lambda: _in_memory(pairs))
        measure("png_decode_only", lambda: _decode_all([files[1], files[3]]))
        ours = results[2]
        differences = {
            "files_1_vs_2_workers": _max_difference(ours, results[1]),
            "in_memory_vs_files": _max_group_difference(ours, memory)}
        try:
            from hotcoco.panoptic import pq_compute
        except ImportError:
            pq_compute = None
        if pq_compute is not None:
            def hotcoco():
                with contextlib.redirect_stdout(io.StringIO()):
                    return pq_compute(files[0], files[2], files[1], files[3])
            differences["hotcoco"] = _max_difference(ours,
                                                     measure("hotcoco", hotcoco))
        if panopticapi_python:
            ms["panopticapi"], cpu["panopticapi"], reference = _panopticapi(
                panopticapi_python, files, repeats, images)
            differences["panopticapi"] = _max_difference(ours, reference)
    report = {"images": images, "size": [height, width], "repeats": repeats,
              "cpu_count": os.cpu_count(),
              "load_average_1min": os.getloadavg()[0],
              "ms_per_image": ms, "cpu_ms_per_image": cpu,
              "target_ms_per_image": TARGET_MS,
              "max_abs_difference": differences,
              "metrics": {g: ours[g] for g in ("All", "Things", "Stuff")},
              "pq_dagger": ours["pq_dagger"], "miou": ours["miou"]}
    best = min(ms["ours_files_1_workers"], ms["ours_files_2_workers"])
    report["speedup_of_best_ours_files"] = {
        name: ms[name] / best for name in ("hotcoco", "panopticapi")
        if name in ms}
    report["cpu_ratio_to_ours_files_1_worker"] = {
        name: cpu[name] / cpu["ours_files_1_workers"]
        for name in ("hotcoco", "panopticapi") if name in cpu}
    report["meets_target"] = best <= TARGET_MS
    return report


def _max_group_difference(a: Dict, b: Dict) -> float:
    return max(abs(a[g][k] - b[g][k]) for g in ("All", "Things", "Stuff")
               for k in ("pq", "sq", "rq"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmark evaluation",
        description="PQ of 1024x2048 pairs: ours vs hotcoco (and panopticapi).")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--panopticapi_python", default=None,
                        help="A Python that can import panopticapi.")
    parser.add_argument("--work_dir", default=None,
                        help="Where the temporary PNG files go.")
    parser.add_argument("--json_out", default=None)
    args = parser.parse_args(argv)
    report = run(args.images, args.repeats, args.height, args.width,
                 args.panopticapi_python, args.work_dir)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
