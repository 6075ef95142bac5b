"""Your own dataset: a descriptor written by hand as a JSON file.

    {
      "name": "fruit",
      "classes": [
        {"id": 1, "name": "apple", "color": [200, 30, 30], "is_thing": true},
        {"id": 2, "name": "pear", "color": [160, 200, 40], "is_thing": true},
        {"id": 7, "name": "table", "color": [120, 90, 50]}
      ],
      "ignore_label": 255,
      "label_divisor": 1000,
      "stuff_area_limit": 4096
    }

Classes get contiguous class ids 0..n-1 in file order; a class's "id" is its
category id in the dataset's COCO panoptic JSON (the descriptor's source id).
"is_thing" defaults to false; "ignore_label", "label_divisor" and
"stuff_area_limit" default to the values above. The ignore label lies outside
the class range, unless one class is marked `"ignore": true` (a "void" class
that the model predicts but losses and metrics ignore, as COCO's class 0);
that class is not a thing and takes the place of "ignore_label".

`resolve_dataset` takes the path of such a file wherever a dataset name goes;
a model keeps the resulting DatasetInfo in its model_config.json. Errors are
one line naming the file and the field, e.g.
`fruit.json: classes[2].id: 1 repeats the id of classes[0]; expected a unique
category id per class`.
"""
import json
from typing import Any, Dict, List

from deeplab2.data.dataset_info import DatasetInfo, UnknownDatasetError, dataset_names

_DEFAULTS = {"ignore_label": 255, "label_divisor": 1000, "stuff_area_limit": 4096}
_FIELDS = ("name", "classes") + tuple(_DEFAULTS)
_CLASS_FIELDS = ("id", "name", "color", "is_thing", "ignore")
_MAX_PANOPTIC_ID = 2**31 - 1  # panoptic ids are int32


class DatasetDescriptorError(UnknownDatasetError):
    """A .json dataset descriptor that cannot be read or is invalid; the
    message is one line naming the file and the field."""


def load_dataset_descriptor(path: str) -> DatasetInfo:
    """The DatasetInfo of the JSON descriptor at `path`."""
    try:
        with open(path) as f:
            values = json.load(f)
    except OSError as error:
        raise DatasetDescriptorError(f"{path}: cannot read the dataset descriptor: "
                                     f"{error.strerror or error}") from None
    except ValueError as error:
        raise DatasetDescriptorError(f"{path}: not valid JSON ({error})") from None
    return descriptor_from_json_values(values, path)


def descriptor_from_json_values(values: Any, path: str) -> DatasetInfo:
    """Validates a descriptor's JSON values (see the module docstring); errors name `path`."""
    check = _Checker(path)
    check.require(isinstance(values, dict), "(top level)",
                  f"got a JSON {type(values).__name__}", "an object with name and classes")
    check.known_fields(values, _FIELDS)
    name = check.name(values, "name")
    check.require(name not in dataset_names(), "name", f"{name!r} is a registered dataset",
                  "a name of your own")
    classes = values.get("classes")
    check.require(isinstance(classes, list) and classes, "classes", _got(classes),
                  "a non-empty list of classes")
    entries = [check.entry(entry, f"classes[{i}]") for i, entry in enumerate(classes)]
    for key in ("id", "name"):
        check.unique([entry[key] for entry in entries], key)

    ignored = [i for i, entry in enumerate(entries) if entry["ignore"]]
    if len(ignored) > 1:
        check.fail(f"classes[{ignored[1]}].ignore", f"classes[{ignored[0]}] is the ignore "
                   "class already", "at most one class with \"ignore\": true")
    num_classes = len(entries)
    if ignored:
        check.require("ignore_label" not in values, "ignore_label",
                      f"given together with the ignore class classes[{ignored[0]}]",
                      "either an ignore class or an ignore_label outside the classes")
        check.require(not entries[ignored[0]]["is_thing"], f"classes[{ignored[0]}].is_thing",
                      "the ignore class is marked as a thing",
                      "no thing flag on the ignore class")
        ignore_label = ignored[0]
    else:
        ignore_label = check.integer(values, "ignore_label", minimum=0)
        if ignore_label < num_classes:
            check.fail("ignore_label", f"{ignore_label} is inside the class range "
                       f"[0, {num_classes}) (class {entries[ignore_label]['name']!r})",
                       f"a label >= {num_classes} (the number of classes), or "
                       "\"ignore\": true on a void class")
    label_divisor = check.integer(values, "label_divisor", minimum=2)
    largest_label = max(num_classes - 1, ignore_label)
    check.require((largest_label + 1) * label_divisor - 1 <= _MAX_PANOPTIC_ID,
                  "label_divisor", f"{label_divisor} makes panoptic ids of label "
                  f"{largest_label} overflow int32",
                  f"at most {(_MAX_PANOPTIC_ID + 1) // (largest_label + 1)}")
    return DatasetInfo(
        name=name,
        class_names=tuple(entry["name"] for entry in entries),
        colors=tuple(entry["color"] for entry in entries),
        thing_ids=tuple(i for i, entry in enumerate(entries) if entry["is_thing"]),
        ignore_label=ignore_label,
        label_divisor=label_divisor,
        stuff_area_limit=check.integer(values, "stuff_area_limit", minimum=0),
        source_ids=tuple(entry["id"] for entry in entries))


class _Checker:
    """Field checks of one descriptor file; each failure raises a one-line
    DatasetDescriptorError: `<file>: <field>: <problem>; expected <what>`."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, field: str, problem: str, expected: str) -> None:
        raise DatasetDescriptorError(f"{self.path}: {field}: {problem}; expected {expected}")

    def require(self, condition: bool, field: str, problem: str, expected: str) -> None:
        if not condition:
            self.fail(field, problem, expected)

    def known_fields(self, values: Dict, fields, where: str = "") -> None:
        for key in values:
            self.require(key in fields, where + str(key), "unknown field",
                         f"only {', '.join(fields)}")

    def name(self, values: Dict, key: str, where: str = "") -> str:
        value = values.get(key)
        self.require(isinstance(value, str) and value.strip() != "", where + key,
                     _got(value), "a non-empty string")
        return value

    def integer(self, values: Dict, key: str, minimum: int, where: str = "") -> int:
        value = values.get(key, _DEFAULTS.get(key))
        self.require(_is_int(value) and value >= minimum, where + key,
                     _got(value), f"an integer >= {minimum}")
        return value

    def entry(self, entry: Any, where: str) -> Dict[str, Any]:
        """One class: its id, name, color, is_thing and ignore, checked."""
        self.require(isinstance(entry, dict), where, _got(entry),
                     "an object with id, name and color")
        where += "."
        self.known_fields(entry, _CLASS_FIELDS, where)
        checked = {"id": self.integer(entry, "id", minimum=0, where=where),
                   "name": self.name(entry, "name", where=where)}
        color = entry.get("color")
        self.require(isinstance(color, list) and len(color) == 3
                     and all(_is_int(c) and 0 <= c <= 255 for c in color),
                     where + "color", _got(color),
                     "[red, green, blue] with integers in 0..255")
        checked["color"] = tuple(color)
        for key in ("is_thing", "ignore"):
            checked[key] = entry.get(key, False)
            self.require(isinstance(checked[key], bool), where + key, _got(checked[key]),
                         "true or false")
        return checked

    def unique(self, values: List, key: str) -> None:
        first: Dict[Any, int] = {}
        for i, value in enumerate(values):
            self.require(value not in first, f"classes[{i}].{key}",
                         f"{value!r} repeats the {key} of classes[{first.get(value)}]",
                         f"a unique {'category id' if key == 'id' else key} per class")
            first[value] = i


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _got(value: Any) -> str:
    """What a bad field holds, shortened: "missing", "got [1, 2]"."""
    if value is None:
        return "missing"
    text = json.dumps(value)
    return f"got {text if len(text) <= 60 else text[:57] + '...'}"
