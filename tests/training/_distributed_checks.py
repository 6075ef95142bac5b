"""Run as a script on 2 logical CPUs: training steps and evaluations under the
default strategy, MirroredStrategy and XLA, printed as one JSON object.

    _distributed_checks.py RECORDS_DIR WORK_DIR

Checks (each a key of the output):
- "mirrored_step": one SGD step of a slim Panoptic-DeepLab (synchronized
  batch norm) under MirroredStrategy vs the default strategy (same global
  batch): losses and updated weights.
- "compiled": one SGD step with the replica step compiled by XLA vs not: the
  Panoptic-DeepLab under the default strategy (plus the dtypes found in its
  XLA-compiled step); the toy family of tests/toy_family.py (no batch norm)
  under MirroredStrategy, and in float16 with loss scaling. The toy's steps
  test the loop's mechanics and trace in seconds; a mirrored step traces the
  model once per replica.
- "accumulated": one SGD step of the toy family with gradient accumulation
  (2 batches of 2) under MirroredStrategy, uncompiled and compiled, vs one
  step on the batch of the same 4 images under the default strategy.
- "mirrored_eval": the evaluation metrics of the toy family under
  MirroredStrategy vs the default strategy, with 2 images and a global batch
  of 4 (fillers pad the batch): the evaluator's batching and gathering do not
  depend on the family.
"""
import json
import pathlib
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeplab2.data import pipeline  # noqa: E402
from deeplab2.evaluation.model_evaluation import Evaluator  # noqa: E402
from deeplab2.inference import Predictor  # noqa: E402
from deeplab2.model import build_model, get_meta_architecture  # noqa: E402
from deeplab2.training.train_loop import LoopOptions, TrainLoop  # noqa: E402
from deeplab2.utils.graph_dtypes import compiled_tensor_dtypes  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import strided_conv_backbone  # noqa: E402
import toy_family  # noqa: E402

RECORDS, WORK_DIR = sys.argv[1], sys.argv[2]
BACKBONE = strided_conv_backbone.register()
CROP = (65, 97)
LEARNING_RATE = 1e-4
SLIM = dict(semantic_aspp_channels=16, semantic_decoder_channels=16,
            semantic_low_level_channels=(8, 8), semantic_head_channels=16,
            instance_aspp_channels=16, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)
DEVICES = [d.name for d in tf.config.list_logical_devices("CPU")]


def tiny_model(strategy, **options):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_model(dataset="synthetic", backbone=BACKBONE,
                            crop_size=CROP, **SLIM, **options)
        for aspp in (model.semantic_aspp, model.instance_aspp):
            aspp.dropout.rate = 0.0  # dropout masks are per replica: not comparable
    return model


def toy_model(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        return build_model(toy_family.NAME, dataset="synthetic", crop_size=CROP)


def train_step(strategy, name, jit_compile=False, optimizer_fn=None, num_steps=1,
               model_fn=tiny_model, batch=2, accumulation_steps=1):
    """Weights before and after `num_steps` steps, and the last losses."""
    model = model_fn(strategy)
    config = model.model_config
    family = get_meta_architecture(config.meta_architecture)
    with strategy.scope():
        # SGD: the update is linear in the gradient, so weights compare at the
        # gradients' precision (Adam's first step is lr * sign(g), which turns
        # round-off in near-zero gradients into full-size differences).
        optimizer = (optimizer_fn or (lambda: keras.optimizers.SGD(LEARNING_RATE)))()

    def dataset_fn(context, start_step):
        return pipeline.training_dataset(
            f"{RECORDS}/train-*.tfrecord", config, family.training_targets(config),
            global_batch_size=batch, seed=0, start_step=start_step, input_context=context,
            options=pipeline.TrainingInput(min_scale=1.0, max_scale=1.0, flip_prob=0.0))

    loop = TrainLoop(strategy, model, family.training_loss(config), optimizer, dataset_fn,
                     f"{WORK_DIR}/{name}",
                     LoopOptions(num_steps=num_steps, global_batch_size=batch, steps_per_loop=1,
                                 jit_compile=jit_compile,
                                 accumulation_steps=accumulation_steps))
    before = {v.path: v.numpy() for v in model.weights}
    losses = loop.train()
    return losses, before, {v.path: v.numpy() for v in model.weights}, loop


def compare(reference, other):
    """Largest weight difference relative to 1 + |w|, and update difference
    relative to the largest update."""
    _, before, after, _ = reference
    _, before_other, after_other, _ = other
    assert all(np.array_equal(before[k], before_other[k]) for k in before)
    relative = {k: float(np.max(np.abs(after[k] - after_other[k]) / (1 + np.abs(after[k]))))
                for k in after}
    worst = max(relative, key=relative.get)
    largest_update = max(float(np.max(np.abs(after[k] - before[k]))) for k in after)
    update_difference = max(float(np.max(np.abs((after_other[k] - before[k])
                                                 - (after[k] - before[k]))))
                            for k in after)
    return {"losses": reference[0], "other_losses": other[0],
            "max_relative_weight_difference": relative[worst], "worst": worst,
            "largest_update": largest_update, "update_difference": update_difference,
            "num_weights": len(after), "same_names": sorted(after) == sorted(after_other)}


def compiled_graph_dtypes(loop):
    """Dtypes of every tensor of the XLA-compiled part of the training loop."""
    concrete = loop.loop_function(1).get_concrete_function(loop.data_iterator(0))
    return sorted({dtype.name for dtype in compiled_tensor_dtypes(concrete)})


def evaluation(strategy):
    model = toy_model(strategy)
    evaluator = Evaluator(f"{RECORDS}/val-*.tfrecord", batch_size=4, num_pictures=0)
    result = evaluator.evaluate(Predictor(model), strategy, step=0)
    return {k: result[k] for k in ("All", "Things", "Stuff", "pq_dagger", "miou", "AP",
                                   "AP50", "AP75", "num_images")}


default = tf.distribute.get_strategy()
mirrored = tf.distribute.MirroredStrategy(DEVICES)
report = {}
single = train_step(default, "single")
report["mirrored_step"] = compare(single, train_step(mirrored, "mirrored"))

compiled_default = train_step(default, "compiled", jit_compile=True)
report["compiled"] = {
    "default": compare(single, compiled_default),
    "mirrored": compare(train_step(default, "toy", model_fn=toy_model),
                        train_step(mirrored, "toy_compiled_mirrored", jit_compile=True,
                                   model_fn=toy_model)),
    "dtypes": compiled_graph_dtypes(compiled_default[3]),
}
whole_batch = train_step(default, "toy_batch_4", model_fn=toy_model, batch=4)
report["accumulated"] = {
    name: compare(whole_batch, train_step(mirrored, f"toy_accumulated_{name}",
                                          jit_compile=jit, model_fn=toy_model,
                                          accumulation_steps=2))
    for name, jit in (("mirrored", False), ("mirrored_compiled", True))}
keras.mixed_precision.set_global_policy("mixed_float16")
report["compiled"]["float16"] = compare(
    train_step(default, "toy_float16", model_fn=toy_model,
               optimizer_fn=lambda: keras.optimizers.LossScaleOptimizer(
                   keras.optimizers.SGD(LEARNING_RATE))),
    train_step(default, "toy_float16_compiled", jit_compile=True, model_fn=toy_model,
               optimizer_fn=lambda: keras.optimizers.LossScaleOptimizer(
                   keras.optimizers.SGD(LEARNING_RATE))))
keras.mixed_precision.set_global_policy("float32")
report["mirrored_eval"] = {"default": evaluation(default), "mirrored": evaluation(mirrored)}
print(json.dumps(report))
