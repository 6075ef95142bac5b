"""`Evaluator`: runs a model over an evaluation split under a tf.distribute strategy.

Every replica predicts its own batches (the evaluation pipeline splits the
images over workers and pads them to full batches); each worker scores the
images its replicas predicted; the workers exchange their per-image records,
and the metrics are summed in the order of the images in the split, so they
equal a single-device evaluation exactly. Only the chief writes: metrics
JSON, pictures of the first predictions it scored, TensorBoard summaries.
"""
import os
from typing import Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import pipeline
from deeplab2.evaluation.coco_evaluation import format_table, write_json
from deeplab2.evaluation.dataset_evaluation import (SplitMetrics, render_prediction,
                                                    score_batch)
from deeplab2.inference import Predictor
from deeplab2.utils import distribute
from deeplab2.utils.progress import Progress


def _takes_strings(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy's input pipeline may carry string tensors to its devices."""
    return not isinstance(strategy, tf.distribute.TPUStrategy)


@gin.configurable
class Evaluator:
    """How and when a split is evaluated (the Gin edge of evaluation).

    Args:
        file_pattern: TFRecords of the split.
        batch_size: images per step over all replicas.
        crop_size: (height, width) every image is padded to (`k *
            output_stride + 1`, at least the largest image); default: the
            model's training crop.
        num_pictures: prediction pictures the chief writes per evaluation.
        every_steps: in train_and_eval mode, evaluate every so many training
            steps (default: once, at the end).
        timeout: continuous_eval gives up after so many seconds without a new
            checkpoint.
        compute_ap: also compute COCO mask AP of the thing instances (and box
            AP when the model predicts boxes; on Cityscapes, AP and AP50 are
            the official Cityscapes ones, COCO's are coco_AP...).
    """

    def __init__(self, file_pattern: str = gin.REQUIRED, *, batch_size: int = 1,
                 crop_size: Optional[Sequence[int]] = None, num_pictures: int = 8,
                 every_steps: Optional[int] = None, timeout: int = 3600,
                 compute_ap: bool = True):
        self.file_pattern = file_pattern
        self.batch_size = batch_size
        self.crop_size = None if crop_size is None else tuple(crop_size)
        self.num_pictures = num_pictures
        self.every_steps = every_steps
        self.timeout = timeout
        self.compute_ap = compute_ap

    def _dataset(self, strategy: tf.distribute.Strategy, config):
        return strategy.distribute_datasets_from_function(
            lambda context: pipeline.evaluation_dataset(
                self.file_pattern, config, global_batch_size=self.batch_size,
                crop_size=self.crop_size, input_context=context,
                keep_image_ids=_takes_strings(strategy)))

    def evaluate(self, predictor: Predictor, strategy: tf.distribute.Strategy, *,
                 step: int, output_dir: Optional[str] = None) -> Dict:
        """Scores a predictor (its model's current weights) on the split.

        Args:
            predictor: a model created under `strategy`'s scope, with its test-time
                augmentation (e.g. `build_predictor(model)`).
            strategy: the strategy the model was built under.
            step: the training step, recorded in the result and file names.
            output_dir: where the chief writes `metrics-<step>.json`,
                `pictures-<step>/` and summaries (None: write nothing).

        Returns:
            The metrics (see `SplitMetrics.result`) with "step".
        """
        config = predictor.config
        split = pipeline.evaluation_split(self.file_pattern, self.batch_size)
        chief = distribute.is_chief(strategy)
        writes = output_dir is not None and chief
        picture_dir = os.path.join(output_dir, f"pictures-{step}") if writes else None

        @tf.function(autograph=False)
        def predict_step(batch):
            def replica_fn(inputs):
                return predictor(inputs[common.IMAGE],
                                 tf.stack([inputs[common.IMAGE_HEIGHT],
                                           inputs[common.IMAGE_WIDTH]], axis=1))
            numeric = {k: v for k, v in batch.items() if k != common.IMAGE_ID}
            return strategy.run(replica_fn, args=(numeric,))

        metrics = SplitMetrics(config.dataset, self.compute_ap)
        progress = Progress(split.num_images, desc="eval", unit="img")
        iterator = iter(self._dataset(strategy, config))
        drawn = 0
        for _ in range(split.num_steps):
            batch = next(iterator)
            local_batches = _local(strategy, batch)
            local_predictions = _local(strategy, predict_step(batch))
            for inputs, predictions in zip(local_batches, local_predictions):
                for i, _, name in score_batch(metrics, inputs, predictions):
                    if picture_dir and drawn < self.num_pictures:
                        from deeplab2.vis import save_png
                        save_png(os.path.join(picture_dir, f"{drawn:05d}_{name}.png"),
                                 render_prediction(inputs, predictions, i, config.dataset))
                        drawn += 1
                    progress.update()
        progress.close()
        payloads = distribute.all_gather_bytes(strategy, metrics.payload())
        merged = SplitMetrics(config.dataset, self.compute_ap)
        for payload in payloads:
            merged.merge_payload(payload)
        if merged.num_images != split.num_images:
            raise RuntimeError(f"evaluation scored {merged.num_images} of the "
                               f"{split.num_images} images of {self.file_pattern}.")
        result = merged.result()
        result["step"] = step
        if chief:
            _print(result)
        if writes:
            _write(result, output_dir, step)
        return result


def _local(strategy: tf.distribute.Strategy, values: Dict) -> list:
    """This worker's per-replica parts of a dict of distributed values, as
    numpy dicts, one per local replica."""
    parts = {k: strategy.experimental_local_results(v) for k, v in values.items()}
    count = len(next(iter(parts.values())))
    return [{k: np.asarray(v[r]) for k, v in parts.items()} for r in range(count)]


def _print(result: Dict) -> None:
    print(f"Evaluation at step {result['step']} ({result['num_images']} images):\n"
          f"{format_table(result)}", flush=True)
    if "coco_AP" in result:  # Cityscapes: AP and AP50 are the official Cityscapes ones
        if result["AP"] is not None:
            print(f"Cityscapes AP {100 * result['AP']:.2f}  AP50 {100 * result['AP50']:.2f}",
                  flush=True)
        if result["coco_AP"] is not None:
            print(f"COCO mask AP {100 * result['coco_AP']:.2f}  AP50 "
                  f"{100 * result['coco_AP50']:.2f}  AP75 {100 * result['coco_AP75']:.2f}",
                  flush=True)
    elif result.get("AP") is not None:
        print(f"mask AP {100 * result['AP']:.2f}  AP50 {100 * result['AP50']:.2f}  "
              f"AP75 {100 * result['AP75']:.2f}", flush=True)
    if result.get("box_AP") is not None:
        print(f"box AP {100 * result['box_AP']:.2f}  AP50 {100 * result['box_AP50']:.2f}  "
              f"AP75 {100 * result['box_AP75']:.2f}", flush=True)


def _write(result: Dict, output_dir: str, step: int) -> None:
    """Writes metrics JSON and TensorBoard scalars."""
    write_json(result, os.path.join(output_dir, f"metrics-{step}.json"))
    with tf.summary.create_file_writer(output_dir).as_default(step=step):
        for group in ("All", "Things", "Stuff"):
            if result[group]["pq"] is not None:
                tf.summary.scalar(f"PQ/{group}", result[group]["pq"])
        for name in ("miou", "AP", "coco_AP", "box_AP"):
            if result.get(name) is not None:
                tf.summary.scalar(name, result[name])
