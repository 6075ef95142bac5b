"""Names of the tensors that flow through the library, defined once.

One dict of tensors travels from the data pipeline (inputs and targets) to the
losses, and from the model (predictions) to post-processing and evaluation.
"""

# Decoded examples and pipeline inputs.
IMAGE = "image"  # uint8 HxWx3 when decoded; float32 in [0, 255] after augmentation.
IMAGE_ID = "image_id"  # string
IMAGE_HEIGHT = "height"  # int32, original height before padding
IMAGE_WIDTH = "width"  # int32, original width before padding
IMAGE_INDEX = "image_index"  # int32 position in an evaluated split; -1 for fillers
PANOPTIC_LABEL = "panoptic_label"  # int32 HxW: class * label_divisor + instance
SEGMENT_IDS = "segment_ids"  # int32 [S]: panoptic id of each source segment
SEGMENT_IS_CROWD = "segment_is_crowd"  # int32 [S]: 1 for crowd segments
# int32 [2]: stateless seed of the random sampling a model does in training
# (e.g. RoIs), derived from the training stream's seed and the example's position.
SAMPLE_SEED = "sample_seed"

# Training targets (deeplab2.data.make_targets).
SEMANTIC_TARGET = "semantic_target"  # int32 HxW
CENTER_HEATMAP_TARGET = "center_heatmap_target"  # float32 HxW, in [0, 1]
CENTER_POINTS = "center_points"  # int32 [max_instances, 2] (y, x), -1 padded
NUM_INSTANCES = "num_instances"  # int32 scalar: valid rows of CENTER_POINTS
OFFSET_TARGET = "offset_target"  # float32 HxWx2 (y, x): center - pixel
SEMANTIC_WEIGHTS = "semantic_weights"  # float32 HxW
CENTER_WEIGHTS = "center_weights"  # float32 HxW
OFFSET_WEIGHTS = "offset_weights"  # float32 HxW

# Model outputs.
SEMANTIC_LOGITS = "semantic_logits"  # float32 HxWxC
CENTER_HEATMAP = "center_heatmap"  # float32 HxWx1
OFFSET = "offset"  # float32 HxWx2 (y, x)
# Softmax of the semantic logits (averaged over test-time augmentation passes).
SEMANTIC_PROBABILITIES = "semantic_probabilities"  # float32 HxWxC
# Detections of the top-down families, D rows per image, best first.
DETECTION_BOXES = "detection_boxes"  # float32 [B, D, 4] (x0, y0, x1, y1) in input pixels
DETECTION_SCORES = "detection_scores"  # float32 [B, D]; 0 in padding rows
DETECTION_CLASSES = "detection_classes"  # int32 [B, D]: thing class 1..K; 0 in padding rows
DETECTION_VALID = "detection_valid"  # int32 [B, D]: 1 for a detection, 0 for padding
MASK_PROBABILITIES = "mask_probabilities"  # float32 [B, D, M, M]: mask of the detected class

# Post-processed predictions.
SEMANTIC = "semantic"  # int32 HxW
INSTANCE = "instance"  # int32 HxW
PANOPTIC = "panoptic"  # int32 HxW
INSTANCE_SCORES = "instance_scores"  # float32 [B, K]: row i is instance id i + 1
INSTANCE_CLASSES = "instance_classes"  # int32 [B, K]: voted class of each instance
INSTANCE_PANOPTIC_IDS = "instance_panoptic_ids"  # int32 [B, K]: class * divisor + k
INSTANCE_CENTERS = "instance_centers"  # int32 [B, K, 2] (y, x), -1 padded
BOXES = "boxes"  # float32 [B, K, 4] (x0, y0, x1, y1): detected box of instance i + 1; 0 for none
