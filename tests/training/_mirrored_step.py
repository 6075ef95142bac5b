"""Run as a script: one training step under MirroredStrategy on 2 logical CPUs and
one under the default strategy, same global batch; prints the differences as JSON."""
import json
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeplab2.data.pipeline import build_dataset  # noqa: E402
from deeplab2.losses import PanopticDeepLabLoss  # noqa: E402
from deeplab2.model import build_model  # noqa: E402
from deeplab2.training.train_loop import LoopOptions, TrainLoop  # noqa: E402

RECORDS, MODEL_DIR = sys.argv[1], sys.argv[2]
CROP = (65, 97)
LEARNING_RATE = 1e-4


def run(strategy, name):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_model("mobilenet_v3_small", dataset="synthetic", crop_size=CROP,
                            semantic_aspp_channels=16, semantic_decoder_channels=16,
                            semantic_low_level_channels=(8, 8), semantic_head_channels=16,
                            instance_aspp_channels=16, instance_decoder_channels=8,
                            instance_low_level_channels=(8, 8), instance_head_channels=8)
        model(tf.zeros((1, 65, 65, 3)), training=False)
        for aspp in (model.semantic_aspp, model.instance_aspp):
            aspp.dropout.rate = 0.0  # dropout masks are per replica: not comparable
        # SGD: the update is linear in the gradient, so weights compare at the
        # gradients' precision (Adam's first step is lr * sign(g), which turns
        # round-off in near-zero gradients into full-size differences).
        optimizer = keras.optimizers.SGD(LEARNING_RATE)

    def dataset_fn(context, start_step):
        return build_dataset(f"{RECORDS}/val-*.tfrecord", "synthetic", False, CROP, 2,
                             input_context=context)

    loop = TrainLoop(strategy, model, PanopticDeepLabLoss(ignore_label=255), optimizer,
                     dataset_fn, f"{MODEL_DIR}/{name}",
                     LoopOptions(num_steps=1, global_batch_size=2, steps_per_loop=1))
    before = {v.path: v.numpy() for v in model.weights}
    losses = loop.train()
    return losses, before, {v.path: v.numpy() for v in model.weights}


devices = [d.name for d in tf.config.list_logical_devices("CPU")]
single_losses, initial, single = run(tf.distribute.get_strategy(), "single")
mirrored_losses, initial_again, mirrored = run(tf.distribute.MirroredStrategy(devices),
                                               "mirrored")
assert all(np.array_equal(initial[k], initial_again[k]) for k in initial)
differences = {k: float(np.max(np.abs(single[k] - mirrored[k]) / (1 + np.abs(single[k]))))
               for k in single}
worst = max(differences, key=differences.get)
# The update itself must agree to round-off, measured against the largest
# update: parameters whose gradient is zero in exact arithmetic (e.g. the beta
# of a batch norm followed by another) move by round-off alone.
updates_single = {k: single[k] - initial[k] for k in single}
updates_mirrored = {k: mirrored[k] - initial[k] for k in single}
largest_update = max(float(np.max(np.abs(u))) for u in updates_single.values())
update_difference = max(float(np.max(np.abs(updates_mirrored[k] - updates_single[k])))
                        for k in single)
print(json.dumps({"single": single_losses, "mirrored": mirrored_losses,
                  "max_relative_weight_difference": differences[worst], "worst": worst,
                  "largest_update": largest_update,
                  "update_difference": update_difference,
                  "num_weights": len(single), "same_names": sorted(single) == sorted(mirrored)}))
