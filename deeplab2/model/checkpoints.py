"""Loading weights from checkpoints, loudly: every load says what it loaded.

`load_variables({checkpoint key: variable}, path)` reads every value first and
assigns only once the whole load is known to be acceptable, so a refused load
leaves the model untouched. Its `LoadReport` counts the variables loaded and
lists the model's variables the checkpoint lacks, the checkpoint keys nothing
read, and the shapes that differ. `init_from_checkpoint` is the trainer's
`init_checkpoint`: it understands this library's checkpoints (whole model or
backbone only) and any foreign format a model family declares, and refuses a
load that covers less than the required part of the model.
"""
import collections
import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

# What tf.train.load_checkpoint returns (py_checkpoint_reader.CheckpointReader).
CheckpointReader = Any

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Checkpoint entries that are not model weights: bookkeeping of tf.train.Checkpoint,
# training state (step, optimizer slots, random generators).
BOOKKEEPING = ("_CHECKPOINTABLE_OBJECT_GRAPH",)
TRAINING_STATE_ROOTS = ("save_counter", "step", "global_step", "optimizer",
                        "backbone_optimizer", "rng_states")
# `init_from_checkpoint(required=...)` values besides a fraction.
REQUIRED_ALL = "all"
REQUIRED_BACKBONE = "backbone"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message says why."""


@dataclasses.dataclass
class LoadReport:
    """What a load did. Keys are checkpoint keys without the variable suffix."""
    path: str
    loaded: List[str]
    missing: List[str]
    unused: List[str]
    mismatched: List[Tuple[str, str]]

    @property
    def total(self) -> int:
        return len(self.loaded) + len(self.missing) + len(self.mismatched)

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} of {self.total} variables; "
                f"{len(self.missing)} missing from the checkpoint, "
                f"{len(self.mismatched)} of another shape, "
                f"{len(self.unused)} checkpoint entries unused")

    def details(self, limit: int = 20) -> str:
        """One line: the summary, then up to `limit` names of each problem."""
        parts = [self.summary()]
        for title, items in (("missing", self.missing),
                             ("other shape", [f"{k} ({why})" for k, why in self.mismatched]),
                             ("unused", self.unused)):
            if items:
                shown = ", ".join(items[:limit])
                more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{title}: {shown}{more}")
        return "; ".join(parts)


def resolve_checkpoint_path(path: str) -> str:
    """A checkpoint prefix, or the latest checkpoint of a folder."""
    if not path:
        raise CheckpointError("no checkpoint path given.")
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(tf.io.gfile.glob(f"{path.rstrip('/')}/*.index"))
        if indexes:
            return indexes[-1][:-len(".index")]
        raise CheckpointError(f"no checkpoint in {path} (expected <prefix>.index files).")
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"no checkpoint {path} (expected {path}.index).")
    return path


def open_checkpoint(path: str) -> Tuple[str, CheckpointReader]:
    """(resolved prefix, reader); a one-line error for a missing or unreadable one."""
    prefix = resolve_checkpoint_path(path)
    try:
        return prefix, tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"cannot read checkpoint {prefix}: {detail}") from None


def strip(key: str) -> str:
    return key[:-len(SUFFIX)] if key.endswith(SUFFIX) else key


def is_training_state(key: str) -> bool:
    """Whether a checkpoint entry holds bookkeeping or training state, not weights."""
    root = key.split("/", 1)[0]
    return key in BOOKKEEPING or root in TRAINING_STATE_ROOTS


def weight_keys(reader: CheckpointReader) -> Dict[str, Tuple[int, ...]]:
    """{key: shape} of the checkpoint's weights (training state left out)."""
    return {key: tuple(shape) for key, shape in reader.get_variable_to_shape_map().items()
            if not is_training_state(key)}


def load_variables(variables: Mapping[str, keras.Variable], path: str, *,
                   allow_missing: Union[bool, Callable[[str], bool]] = False,
                   allow_unused: Union[bool, Callable[[str], bool]] = False,
                   allow_mismatch: bool = False,
                   reader: Optional[CheckpointReader] = None) -> LoadReport:
    """Loads `{checkpoint key: variable}` from the checkpoint at `path`.

    Args:
        allow_missing: accept variables absent from the checkpoint (True, or
            a predicate on the key); they keep their values.
        allow_unused: accept checkpoint weights nothing reads (True or a
            predicate); training state is always ignored.
        allow_mismatch: skip (and report) variables of another shape, e.g. a
            classifier for another class count.
        reader: an open reader of `path` (default: opened here).

    Raises:
        CheckpointError listing the offending names when shapes differ or
        when missing/unused entries are not allowed; nothing is assigned then.
    """
    if reader is None:
        path, reader = open_checkpoint(path)
    report, sources = _match(variables, path, reader)
    loaded, missing, unused, mismatched = (report.loaded, report.missing, report.unused,
                                           report.mismatched)
    wanted = {strip(key): variable for key, variable in variables.items()}
    values = {}
    refused = [] if allow_mismatch else list(mismatched)
    refused += [(key, "missing") for key in missing if not _allowed(allow_missing, key)]
    refused += [(key, "unused") for key in unused if not _allowed(allow_unused, key)]
    if refused:
        raise CheckpointError(f"refused to load {report.details()}")
    try:
        for key in loaded:
            values[key] = reader.get_tensor(sources[key])
    except (tf.errors.OpError, IndexError, ValueError) as error:  # truncated files
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"checkpoint {path} is damaged (reading {key}): "
                              f"{detail}") from None
    for key in loaded:
        wanted[key].assign(np.asarray(values[key]))
    return report


def stored_keys(reader: CheckpointReader, path: str = "") -> Dict[str, str]:
    """{object path + SUFFIX: the key its value is stored under}, for every path
    to every variable of the checkpoint's object graph. TensorFlow stores a
    variable under its shortest path only (a trainer checkpoint keeps model
    weights under optimizer/_trainable_variables/N), so looking a variable up
    by its model path needs this map."""
    if not reader.has_tensor(BOOKKEEPING[0]):
        return {}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        graph.ParseFromString(reader.get_tensor(BOOKKEEPING[0]))
    except Exception as error:  # noqa: BLE001 - truncated or corrupt files raise anything
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"checkpoint {path} is damaged (its object graph cannot "
                              f"be read): {detail}") from None
    keys, stack = {}, [(0, "", frozenset([0]))]
    while stack:
        node_id, path, ancestors = stack.pop()
        for attribute in graph.nodes[node_id].attributes:
            if attribute.name == "VARIABLE_VALUE":
                keys[path + SUFFIX] = attribute.checkpoint_key
        for child in graph.nodes[node_id].children:
            if child.node_id not in ancestors:
                name = f"{path}/{child.local_name}" if path else child.local_name
                stack.append((child.node_id, name, ancestors | {child.node_id}))
    return keys


def weight_paths(reader: CheckpointReader, path: str = "") -> List[str]:
    """Keys of the checkpoint's weights and object paths of its weight variables
    (training state left out)."""
    paths = list(weight_keys(reader))
    paths += [key for key in stored_keys(reader, path) if not is_training_state(key)]
    return sorted(set(paths))


def compare(variables: Mapping[str, keras.Variable], path: str,
            reader: CheckpointReader) -> LoadReport:
    """What loading `{object path + SUFFIX: variable}` from `reader` would do."""
    report, _ = _match(variables, path, reader)
    return report


def _match(variables, path, reader):
    """(LoadReport, {loaded key: stored key})."""
    shapes = {key: tuple(shape) for key, shape in reader.get_variable_to_shape_map().items()}
    stored = stored_keys(reader, path)
    wanted = {strip(key): variable for key, variable in variables.items()}
    loaded, missing, mismatched, sources = [], [], [], {}
    for key, variable in wanted.items():
        source = stored.get(key + SUFFIX, key + SUFFIX)
        shape = shapes.get(source)
        if shape is None:
            missing.append(key)
        elif shape != tuple(variable.shape):
            mismatched.append((key, f"checkpoint {shape}, model {tuple(variable.shape)}"))
        else:
            loaded.append(key)
            sources[key] = source
    used = set(sources.values())
    unused = sorted(strip(key) for key in weight_keys(reader) if key not in used)
    return LoadReport(path, loaded, missing, unused, mismatched), sources


def _allowed(rule: Union[bool, Callable[[str], bool]], key: str) -> bool:
    return rule(key) if callable(rule) else bool(rule)


def checkpoint_variables(root, prefix: str) -> Dict[str, keras.Variable]:
    """{checkpoint key: variable} of `root` saved under object path `prefix`,
    named as `tf.train.Checkpoint` names them (breadth-first over trackable
    children; the first path to an object names it)."""
    keys, seen = {}, {id(root)}
    queue = collections.deque([(root, prefix)])
    while queue:
        parent, path = queue.popleft()
        for name, child in tf.train.TrackableView.children(parent).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}/{_escape(name)}"
            if isinstance(child, (keras.Variable, tf.Variable)):
                keys[child_path + SUFFIX] = child
            else:
                queue.append((child, child_path))
    return keys


def _escape(name: str) -> str:
    """Escapes an object-graph edge name as TensorFlow checkpoints do."""
    return name.replace(".", "..").replace("/", ".S")


# A foreign checkpoint format: given the model and the checkpoint's weight keys,
# returns {checkpoint key: variable} if it recognizes the checkpoint, else None.
ForeignFormat = Callable[[keras.Model, Sequence[str]], Optional[Dict[str, keras.Variable]]]


def init_from_checkpoint(model: keras.Model, path: str, model_key: str = "model",
                         required: Union[str, float] = REQUIRED_BACKBONE,
                         foreign_formats: Sequence[ForeignFormat] = ()) -> LoadReport:
    """Initializes `model` from a checkpoint of this library or a foreign one.

    Recognized: checkpoints holding the model under `model_key` (trainer and
    exported checkpoints), backbone-only checkpoints (`model_key/backbone`),
    and whatever `foreign_formats` map. Variables the checkpoint lacks or
    holds with another shape (e.g. a classifier for other classes) keep their
    initial values and are reported, but the load must cover `required`:
    "all", the model's "backbone" (default), or a fraction of the model's
    variables.
    """
    path, reader = open_checkpoint(path)
    keys = weight_paths(reader, path)
    variables = _own_format(model, keys, model_key)
    for foreign in foreign_formats:
        if variables:
            break
        variables = foreign(model, keys)
    if not variables:
        sample = ", ".join(sorted(strip(k) for k in keys)[:5])
        raise CheckpointError(f"checkpoint {path} holds no weights of this model "
                              f"(expected entries under {model_key}/; found e.g. {sample}).")
    report = load_variables(variables, path, allow_missing=True, allow_unused=True,
                            allow_mismatch=True, reader=reader)
    _check_coverage(model, variables, report, required)
    return report


def _own_format(model, keys, model_key) -> Optional[Dict[str, keras.Variable]]:
    candidates = [checkpoint_variables(model, model_key)]
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        candidates += [checkpoint_variables(backbone, prefix)
                       for prefix in (f"{model_key}/backbone", model_key)]
    for own in candidates:
        if any(key in own for key in keys):
            return own
    return None


def _check_coverage(model, variables, report: LoadReport, required) -> None:
    loaded = {id(variables[key + SUFFIX]) for key in report.loaded}
    if required == REQUIRED_ALL:
        needed = [v for v in model.weights if _is_weight(v)]
    elif required == REQUIRED_BACKBONE:
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise CheckpointError("required='backbone' but the model has no backbone.")
        needed = [v for v in backbone.weights if _is_weight(v)]
    else:
        fraction = float(required)
        if not 0.0 <= fraction <= 1.0:
            raise CheckpointError(f"required must be 'all', 'backbone' or a fraction in "
                                  f"[0, 1], got {required!r}")
        weights = [v for v in model.weights if _is_weight(v)]
        covered = sum(id(v) in loaded for v in weights)
        if covered < fraction * len(weights):
            raise CheckpointError(
                f"init checkpoint covers {covered} of {len(weights)} variables, less "
                f"than the required {fraction:.0%}: {report.details()}")
        return
    absent = [v.path for v in needed if id(v) not in loaded]
    if absent:
        shown = ", ".join(absent[:20]) + (f" ... and {len(absent) - 20} more"
                                          if len(absent) > 20 else "")
        raise CheckpointError(f"init checkpoint does not cover the {required}: "
                              f"{len(absent)} of its {len(needed)} variables not loaded "
                              f"({shown}); {report.summary()}")


def _is_weight(variable) -> bool:
    """Model state worth loading (not random-generator seeds)."""
    return "seed_generator" not in variable.path
