"""Dataset descriptors: the facts about each dataset's label space, looked up by name.

A descriptor is immutable and holds what every stage needs: class names and
colors, which classes are things, the ignore label, the label divisor of the
panoptic encoding (`class * label_divisor + instance`), the stuff area limit of
post-processing, and the dataset's original category id of each class (for
writing predictions in the dataset's official format).
"""
import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """The label space of one dataset.

    Attributes:
        name: registry name, e.g. "cityscapes".
        class_names: name of each class id 0..num_classes-1.
        colors: RGB color of each class id, for visualization.
        thing_ids: class ids that have instances.
        ignore_label: semantic label of unlabeled / void pixels.
        label_divisor: panoptic id = class * label_divisor + instance id.
        stuff_area_limit: stuff regions of at most this many pixels become void in
            post-processing.
        source_ids: the dataset's original category id of each class id (e.g.
            Cityscapes label ids, COCO category ids); used by official-format writers.
    """
    name: str
    class_names: Tuple[str, ...]
    colors: Tuple[Tuple[int, int, int], ...]
    thing_ids: Tuple[int, ...]
    ignore_label: int
    label_divisor: int
    stuff_area_limit: int
    source_ids: Tuple[int, ...]

    def __post_init__(self):
        n = len(self.class_names)
        if len(self.colors) != n or len(self.source_ids) != n:
            raise ValueError(
                    f"DatasetInfo {self.name!r}: class_names ({n}), colors "
                    f"({len(self.colors)}) and source_ids ({len(self.source_ids)}) must "
                    "have one entry per class.")
        bad = [t for t in self.thing_ids if not 0 <= t < n]
        if bad:
            raise ValueError(f"DatasetInfo {self.name!r}: thing ids {bad} are not "
                                              f"class ids in [0, {n}).")

    @property
    def num_classes(self) -> int:
        """Number of semantic classes (channels of the semantic logits)."""
        return len(self.class_names)

    @property
    def stuff_ids(self) -> Tuple[int, ...]:
        """Class ids without instances (the ignore label excluded)."""
        things = set(self.thing_ids)
        return tuple(c for c in range(self.num_classes)
                                  if c not in things and c != self.ignore_label)

    def is_thing(self, class_id: int) -> bool:
        return class_id in self.thing_ids

    @property
    def ignore_panoptic_id(self) -> int:
        """Panoptic id of an ignored pixel (also the pad value of labels)."""
        return self.ignore_label * self.label_divisor


_CITYSCAPES = (
        # (train id name, label id, color)
        ("road", 7, (128, 64, 128)),
        ("sidewalk", 8, (244, 35, 232)),
        ("building", 11, (70, 70, 70)),
        ("wall", 12, (102, 102, 156)),
        ("fence", 13, (190, 153, 153)),
        ("pole", 17, (153, 153, 153)),
        ("traffic light", 19, (250, 170, 30)),
        ("traffic sign", 20, (220, 220, 0)),
        ("vegetation", 21, (107, 142, 35)),
        ("terrain", 22, (152, 251, 152)),
        ("sky", 23, (70, 130, 180)),
        ("person", 24, (220, 20, 60)),
        ("rider", 25, (255, 0, 0)),
        ("car", 26, (0, 0, 142)),
        ("truck", 27, (0, 0, 70)),
        ("bus", 28, (0, 60, 100)),
        ("train", 31, (0, 80, 100)),
        ("motorcycle", 32, (0, 0, 230)),
        ("bicycle", 33, (119, 11, 32)),
)

# COCO panoptic categories in the order of panoptic_coco_categories.json:
# (category id, name, isthing, color). Contiguous class id = position + 1;
# class 0 is void, which is also the ignore label.
_COCO = (
        (1, 'person', 1, (220, 20, 60)),
        (2, 'bicycle', 1, (119, 11, 32)),
        (3, 'car', 1, (0, 0, 142)),
        (4, 'motorcycle', 1, (0, 0, 230)),
        (5, 'airplane', 1, (106, 0, 228)),
        (6, 'bus', 1, (0, 60, 100)),
        (7, 'train', 1, (0, 80, 100)),
        (8, 'truck', 1, (0, 0, 70)),
        (9, 'boat', 1, (0, 0, 192)),
        (10, 'traffic light', 1, (250, 170, 30)),
        (11, 'fire hydrant', 1, (100, 170, 30)),
        (13, 'stop sign', 1, (220, 220, 0)),
        (14, 'parking meter', 1, (175, 116, 175)),
        (15, 'bench', 1, (250, 0, 30)),
        (16, 'bird', 1, (165, 42, 42)),
        (17, 'cat', 1, (255, 77, 255)),
        (18, 'dog', 1, (0, 226, 252)),
        (19, 'horse', 1, (182, 182, 255)),
        (20, 'sheep', 1, (0, 82, 0)),
        (21, 'cow', 1, (120, 166, 157)),
        (22, 'elephant', 1, (110, 76, 0)),
        (23, 'bear', 1, (174, 57, 255)),
        (24, 'zebra', 1, (199, 100, 0)),
        (25, 'giraffe', 1, (72, 0, 118)),
        (27, 'backpack', 1, (255, 179, 240)),
        (28, 'umbrella', 1, (0, 125, 92)),
        (31, 'handbag', 1, (209, 0, 151)),
        (32, 'tie', 1, (188, 208, 182)),
        (33, 'suitcase', 1, (0, 220, 176)),
        (34, 'frisbee', 1, (255, 99, 164)),
        (35, 'skis', 1, (92, 0, 73)),
        (36, 'snowboard', 1, (133, 129, 255)),
        (37, 'sports ball', 1, (78, 180, 255)),
        (38, 'kite', 1, (0, 228, 0)),
        (39, 'baseball bat', 1, (174, 255, 243)),
        (40, 'baseball glove', 1, (45, 89, 255)),
        (41, 'skateboard', 1, (134, 134, 103)),
        (42, 'surfboard', 1, (145, 148, 174)),
        (43, 'tennis racket', 1, (255, 208, 186)),
        (44, 'bottle', 1, (197, 226, 255)),
        (46, 'wine glass', 1, (171, 134, 1)),
        (47, 'cup', 1, (109, 63, 54)),
        (48, 'fork', 1, (207, 138, 255)),
        (49, 'knife', 1, (151, 0, 95)),
        (50, 'spoon', 1, (9, 80, 61)),
        (51, 'bowl', 1, (84, 105, 51)),
        (52, 'banana', 1, (74, 65, 105)),
        (53, 'apple', 1, (166, 196, 102)),
        (54, 'sandwich', 1, (208, 195, 210)),
        (55, 'orange', 1, (255, 109, 65)),
        (56, 'broccoli', 1, (0, 143, 149)),
        (57, 'carrot', 1, (179, 0, 194)),
        (58, 'hot dog', 1, (209, 99, 106)),
        (59, 'pizza', 1, (5, 121, 0)),
        (60, 'donut', 1, (227, 255, 205)),
        (61, 'cake', 1, (147, 186, 208)),
        (62, 'chair', 1, (153, 69, 1)),
        (63, 'couch', 1, (3, 95, 161)),
        (64, 'potted plant', 1, (163, 255, 0)),
        (65, 'bed', 1, (119, 0, 170)),
        (67, 'dining table', 1, (0, 182, 199)),
        (70, 'toilet', 1, (0, 165, 120)),
        (72, 'tv', 1, (183, 130, 88)),
        (73, 'laptop', 1, (95, 32, 0)),
        (74, 'mouse', 1, (130, 114, 135)),
        (75, 'remote', 1, (110, 129, 133)),
        (76, 'keyboard', 1, (166, 74, 118)),
        (77, 'cell phone', 1, (219, 142, 185)),
        (78, 'microwave', 1, (79, 210, 114)),
        (79, 'oven', 1, (178, 90, 62)),
        (80, 'toaster', 1, (65, 70, 15)),
        (81, 'sink', 1, (127, 167, 115)),
        (82, 'refrigerator', 1, (59, 105, 106)),
        (84, 'book', 1, (142, 108, 45)),
        (85, 'clock', 1, (196, 172, 0)),
        (86, 'vase', 1, (95, 54, 80)),
        (87, 'scissors', 1, (128, 76, 255)),
        (88, 'teddy bear', 1, (201, 57, 1)),
        (89, 'hair drier', 1, (246, 0, 122)),
        (90, 'toothbrush', 1, (191, 162, 208)),
        (92, 'banner', 0, (255, 255, 128)),
        (93, 'blanket', 0, (147, 211, 203)),
        (95, 'bridge', 0, (150, 100, 100)),
        (100, 'cardboard', 0, (168, 171, 172)),
        (107, 'counter', 0, (146, 112, 198)),
        (109, 'curtain', 0, (210, 170, 100)),
        (112, 'door-stuff', 0, (92, 136, 89)),
        (118, 'floor-wood', 0, (218, 88, 184)),
        (119, 'flower', 0, (241, 129, 0)),
        (122, 'fruit', 0, (217, 17, 255)),
        (125, 'gravel', 0, (124, 74, 181)),
        (128, 'house', 0, (70, 70, 70)),
        (130, 'light', 0, (255, 228, 255)),
        (133, 'mirror-stuff', 0, (154, 208, 0)),
        (138, 'net', 0, (193, 0, 92)),
        (141, 'pillow', 0, (76, 91, 113)),
        (144, 'platform', 0, (255, 180, 195)),
        (145, 'playingfield', 0, (106, 154, 176)),
        (147, 'railroad', 0, (230, 150, 140)),
        (148, 'river', 0, (60, 143, 255)),
        (149, 'road', 0, (128, 64, 128)),
        (151, 'roof', 0, (92, 82, 55)),
        (154, 'sand', 0, (254, 212, 124)),
        (155, 'sea', 0, (73, 77, 174)),
        (156, 'shelf', 0, (255, 160, 98)),
        (159, 'snow', 0, (255, 255, 255)),
        (161, 'stairs', 0, (104, 84, 109)),
        (166, 'tent', 0, (169, 164, 131)),
        (168, 'towel', 0, (225, 199, 255)),
        (171, 'wall-brick', 0, (137, 54, 74)),
        (175, 'wall-stone', 0, (135, 158, 223)),
        (176, 'wall-tile', 0, (7, 246, 231)),
        (177, 'wall-wood', 0, (107, 255, 200)),
        (178, 'water-other', 0, (58, 41, 149)),
        (180, 'window-blind', 0, (183, 121, 142)),
        (181, 'window-other', 0, (255, 73, 97)),
        (184, 'tree-merged', 0, (107, 142, 35)),
        (185, 'fence-merged', 0, (190, 153, 153)),
        (186, 'ceiling-merged', 0, (146, 139, 141)),
        (187, 'sky-other-merged', 0, (70, 130, 180)),
        (188, 'cabinet-merged', 0, (134, 199, 156)),
        (189, 'table-merged', 0, (209, 226, 140)),
        (190, 'floor-other-merged', 0, (96, 36, 108)),
        (191, 'pavement-merged', 0, (96, 96, 96)),
        (192, 'mountain-merged', 0, (64, 170, 64)),
        (193, 'grass-merged', 0, (152, 251, 152)),
        (194, 'dirt-merged', 0, (208, 229, 228)),
        (195, 'paper-merged', 0, (206, 186, 171)),
        (196, 'food-other-merged', 0, (152, 161, 64)),
        (197, 'building-other-merged', 0, (116, 112, 0)),
        (198, 'rock-merged', 0, (0, 114, 143)),
        (199, 'wall-other-merged', 0, (102, 102, 156)),
        (200, 'rug-merged', 0, (250, 141, 255)),
)

# Mapillary Vistas v1.2 evaluated labels in the order of config_v1.2.json:
# (readable name, has instances, color). Class id = position (the value of the
# semantic label PNGs); source id = position + 1, the category id of the
# panoptic_2018.json annotations. The 66th label, "Unlabeled", is void: it maps
# to the ignore label 255 (not 65) so that class ids stay contiguous and the
# ignore value fits future label sets (v2.0 has 124 classes).
_MAPILLARY_VISTAS = (
        ("Bird", True, (165, 42, 42)),
        ("Ground Animal", True, (0, 192, 0)),
        ("Curb", False, (196, 196, 196)),
        ("Fence", False, (190, 153, 153)),
        ("Guard Rail", False, (180, 165, 180)),
        ("Barrier", False, (90, 120, 150)),
        ("Wall", False, (102, 102, 156)),
        ("Bike Lane", False, (128, 64, 255)),
        ("Crosswalk - Plain", True, (140, 140, 200)),
        ("Curb Cut", False, (170, 170, 170)),
        ("Parking", False, (250, 170, 160)),
        ("Pedestrian Area", False, (96, 96, 96)),
        ("Rail Track", False, (230, 150, 140)),
        ("Road", False, (128, 64, 128)),
        ("Service Lane", False, (110, 110, 110)),
        ("Sidewalk", False, (244, 35, 232)),
        ("Bridge", False, (150, 100, 100)),
        ("Building", False, (70, 70, 70)),
        ("Tunnel", False, (150, 120, 90)),
        ("Person", True, (220, 20, 60)),
        ("Bicyclist", True, (255, 0, 0)),
        ("Motorcyclist", True, (255, 0, 100)),
        ("Other Rider", True, (255, 0, 200)),
        ("Lane Marking - Crosswalk", True, (200, 128, 128)),
        ("Lane Marking - General", False, (255, 255, 255)),
        ("Mountain", False, (64, 170, 64)),
        ("Sand", False, (230, 160, 50)),
        ("Sky", False, (70, 130, 180)),
        ("Snow", False, (190, 255, 255)),
        ("Terrain", False, (152, 251, 152)),
        ("Vegetation", False, (107, 142, 35)),
        ("Water", False, (0, 170, 30)),
        ("Banner", True, (255, 255, 128)),
        ("Bench", True, (250, 0, 30)),
        ("Bike Rack", True, (100, 140, 180)),
        ("Billboard", True, (220, 220, 220)),
        ("Catch Basin", True, (220, 128, 128)),
        ("CCTV Camera", True, (222, 40, 40)),
        ("Fire Hydrant", True, (100, 170, 30)),
        ("Junction Box", True, (40, 40, 40)),
        ("Mailbox", True, (33, 33, 33)),
        ("Manhole", True, (100, 128, 160)),
        ("Phone Booth", True, (142, 0, 0)),
        ("Pothole", False, (70, 100, 150)),
        ("Street Light", True, (210, 170, 100)),
        ("Pole", True, (153, 153, 153)),
        ("Traffic Sign Frame", True, (128, 128, 128)),
        ("Utility Pole", True, (0, 0, 80)),
        ("Traffic Light", True, (250, 170, 30)),
        ("Traffic Sign (Back)", True, (192, 192, 192)),
        ("Traffic Sign (Front)", True, (220, 220, 0)),
        ("Trash Can", True, (140, 140, 20)),
        ("Bicycle", True, (119, 11, 32)),
        ("Boat", True, (150, 0, 255)),
        ("Bus", True, (0, 60, 100)),
        ("Car", True, (0, 0, 142)),
        ("Caravan", True, (0, 0, 90)),
        ("Motorcycle", True, (0, 0, 230)),
        ("On Rails", False, (0, 80, 100)),
        ("Other Vehicle", True, (128, 64, 64)),
        ("Trailer", True, (0, 0, 110)),
        ("Truck", True, (0, 0, 70)),
        ("Wheeled Slow", True, (0, 0, 192)),
        ("Car Mount", False, (32, 32, 32)),
        ("Ego Vehicle", False, (120, 10, 10)),
)

# Mapillary Vistas v2.0 evaluated labels in the order of config_v2.0.json:
# (category id, readable name, has instances, color). The config lists 124
# labels; category id = position + 1 (as in v1.2). The 8 labels with
# "evaluate": false are void and map to the ignore label 255, which leaves the
# benchmark's 116 classes (70 things, 46 stuff): Ambiguous Barrier (3), Person
# Group (32), Lane Marking - Ambiguous (39), Signage - Ambiguous (80), Pole Group
# (87), Traffic Sign - Ambiguous (97), Vehicle Group (116) and Unlabeled (124).
# "Lane Marking (only) - Test" is the config's own spelling.
_MAPILLARY_VISTAS_V2 = (
        (1, "Bird", True, (165, 42, 42)),
        (2, "Ground Animal", True, (0, 192, 0)),
        (4, "Concrete Block", False, (250, 170, 32)),
        (5, "Curb", False, (196, 196, 196)),
        (6, "Fence", False, (190, 153, 153)),
        (7, "Guard Rail", False, (180, 165, 180)),
        (8, "Barrier", False, (90, 120, 150)),
        (9, "Road Median", False, (250, 170, 33)),
        (10, "Road Side", False, (250, 170, 34)),
        (11, "Lane Separator", False, (128, 128, 128)),
        (12, "Temporary Barrier", True, (250, 170, 35)),
        (13, "Wall", False, (102, 102, 156)),
        (14, "Bike Lane", False, (128, 64, 255)),
        (15, "Crosswalk - Plain", True, (140, 140, 200)),
        (16, "Curb Cut", False, (170, 170, 170)),
        (17, "Driveway", True, (250, 170, 36)),
        (18, "Parking", False, (250, 170, 160)),
        (19, "Parking Aisle", False, (250, 170, 37)),
        (20, "Pedestrian Area", False, (96, 96, 96)),
        (21, "Rail Track", False, (230, 150, 140)),
        (22, "Road", False, (128, 64, 128)),
        (23, "Road Shoulder", False, (110, 110, 110)),
        (24, "Service Lane", False, (110, 110, 110)),
        (25, "Sidewalk", False, (244, 35, 232)),
        (26, "Traffic Island", False, (128, 196, 128)),
        (27, "Bridge", False, (150, 100, 100)),
        (28, "Building", False, (70, 70, 70)),
        (29, "Garage", False, (150, 150, 150)),
        (30, "Tunnel", False, (150, 120, 90)),
        (31, "Person", True, (220, 20, 60)),
        (33, "Bicyclist", True, (255, 0, 0)),
        (34, "Motorcyclist", True, (255, 0, 100)),
        (35, "Other Rider", True, (255, 0, 200)),
        (36, "Lane Marking - Dashed Line", False, (255, 255, 255)),
        (37, "Lane Marking - Straight Line", False, (255, 255, 255)),
        (38, "Lane Marking - Zigzag Line", False, (250, 170, 29)),
        (40, "Lane Marking - Arrow (Left)", True, (250, 170, 26)),
        (41, "Lane Marking - Arrow (Other)", True, (250, 170, 25)),
        (42, "Lane Marking - Arrow (Right)", True, (250, 170, 24)),
        (43, "Lane Marking - Arrow (Split Left or Straight)", True, (250, 170, 22)),
        (44, "Lane Marking - Arrow (Split Right or Straight)", True, (250, 170, 21)),
        (45, "Lane Marking - Arrow (Straight)", True, (250, 170, 20)),
        (46, "Lane Marking - Crosswalk", True, (255, 255, 255)),
        (47, "Lane Marking - Give Way (Row)", True, (250, 170, 19)),
        (48, "Lane Marking - Give Way (Single)", True, (250, 170, 18)),
        (49, "Lane Marking - Hatched (Chevron)", False, (250, 170, 12)),
        (50, "Lane Marking - Hatched (Diagonal)", False, (250, 170, 11)),
        (51, "Lane Marking - Other", True, (255, 255, 255)),
        (52, "Lane Marking - Stop Line", True, (255, 255, 255)),
        (53, "Lane Marking - Symbol (Bicycle)", True, (250, 170, 16)),
        (54, "Lane Marking - Symbol (Other)", True, (250, 170, 15)),
        (55, "Lane Marking - Text", True, (250, 170, 15)),
        (56, "Lane Marking (only) - Dashed Line", False, (255, 255, 255)),
        (57, "Lane Marking (only) - Crosswalk", False, (255, 255, 255)),
        (58, "Lane Marking (only) - Other", False, (255, 255, 255)),
        (59, "Lane Marking (only) - Test", False, (255, 255, 255)),
        (60, "Mountain", False, (64, 170, 64)),
        (61, "Sand", False, (230, 160, 50)),
        (62, "Sky", False, (70, 130, 180)),
        (63, "Snow", False, (190, 255, 255)),
        (64, "Terrain", False, (152, 251, 152)),
        (65, "Vegetation", False, (107, 142, 35)),
        (66, "Water", False, (0, 170, 30)),
        (67, "Banner", True, (255, 255, 128)),
        (68, "Bench", True, (250, 0, 30)),
        (69, "Bike Rack", True, (100, 140, 180)),
        (70, "Catch Basin", True, (220, 128, 128)),
        (71, "CCTV Camera", True, (222, 40, 40)),
        (72, "Fire Hydrant", True, (100, 170, 30)),
        (73, "Junction Box", True, (40, 40, 40)),
        (74, "Mailbox", True, (33, 33, 33)),
        (75, "Manhole", True, (100, 128, 160)),
        (76, "Parking Meter", True, (20, 20, 255)),
        (77, "Phone Booth", True, (142, 0, 0)),
        (78, "Pothole", False, (70, 100, 150)),
        (79, "Signage - Advertisement", True, (250, 171, 30)),
        (81, "Signage - Back", True, (250, 173, 30)),
        (82, "Signage - Information", True, (250, 174, 30)),
        (83, "Signage - Other", True, (250, 175, 30)),
        (84, "Signage - Store", True, (250, 176, 30)),
        (85, "Street Light", True, (210, 170, 100)),
        (86, "Pole", True, (153, 153, 153)),
        (88, "Traffic Sign Frame", True, (128, 128, 128)),
        (89, "Utility Pole", True, (0, 0, 80)),
        (90, "Traffic Cone", True, (210, 60, 60)),
        (91, "Traffic Light - General (Single)", True, (250, 170, 30)),
        (92, "Traffic Light - Pedestrians", True, (250, 170, 30)),
        (93, "Traffic Light - General (Upright)", True, (250, 170, 30)),
        (94, "Traffic Light - General (Horizontal)", True, (250, 170, 30)),
        (95, "Traffic Light - Cyclists", True, (250, 170, 30)),
        (96, "Traffic Light - Other", True, (250, 170, 30)),
        (98, "Traffic Sign (Back)", True, (192, 192, 192)),
        (99, "Traffic Sign - Direction (Back)", True, (192, 192, 192)),
        (100, "Traffic Sign - Direction (Front)", True, (220, 220, 0)),
        (101, "Traffic Sign (Front)", True, (220, 220, 0)),
        (102, "Traffic Sign - Parking", True, (0, 0, 196)),
        (103, "Traffic Sign - Temporary (Back)", True, (192, 192, 192)),
        (104, "Traffic Sign - Temporary (Front)", True, (220, 220, 0)),
        (105, "Trash Can", True, (140, 140, 20)),
        (106, "Bicycle", True, (119, 11, 32)),
        (107, "Boat", True, (150, 0, 255)),
        (108, "Bus", True, (0, 60, 100)),
        (109, "Car", True, (0, 0, 142)),
        (110, "Caravan", True, (0, 0, 90)),
        (111, "Motorcycle", True, (0, 0, 230)),
        (112, "On Rails", True, (0, 80, 100)),
        (113, "Other Vehicle", True, (128, 64, 64)),
        (114, "Trailer", True, (0, 0, 110)),
        (115, "Truck", True, (0, 0, 70)),
        (117, "Wheeled Slow", True, (0, 0, 192)),
        (118, "Water Valve", True, (170, 170, 170)),
        (119, "Car Mount", False, (32, 32, 32)),
        (120, "Dynamic", False, (111, 74, 0)),
        (121, "Ego Vehicle", False, (120, 10, 10)),
        (122, "Ground", False, (81, 0, 81)),
        (123, "Static", False, (111, 111, 0)),
)

# ADE20K SceneParsing's 150 classes in the order of objectInfo150 (first name of
# each entry): (name, is thing, color). Thing flags follow the ADE20K panoptic
# benchmark (detectron2 / Mask2Former metadata, 100 things). As for COCO, class
# id = position + 1 = the value of the SceneParsing label PNGs, and class 0 is
# void ("other"), also the ignore label. Source id = position, the category id
# of the panoptic JSON made by Mask2Former's prepare_ade20k_pan_seg.py; void has
# no category there and gets -1.
_ADE20K = (
        ("wall", False, (120, 120, 120)),
        ("building", False, (180, 120, 120)),
        ("sky", False, (6, 230, 230)),
        ("floor", False, (80, 50, 50)),
        ("tree", False, (4, 200, 3)),
        ("ceiling", False, (120, 120, 80)),
        ("road", False, (140, 140, 140)),
        ("bed", True, (204, 5, 255)),
        ("windowpane", True, (230, 230, 230)),
        ("grass", False, (4, 250, 7)),
        ("cabinet", True, (224, 5, 255)),
        ("sidewalk", False, (235, 255, 7)),
        ("person", True, (150, 5, 61)),
        ("earth", False, (120, 120, 70)),
        ("door", True, (8, 255, 51)),
        ("table", True, (255, 6, 82)),
        ("mountain", False, (143, 255, 140)),
        ("plant", False, (204, 255, 4)),
        ("curtain", True, (255, 51, 7)),
        ("chair", True, (204, 70, 3)),
        ("car", True, (0, 102, 200)),
        ("water", False, (61, 230, 250)),
        ("painting", True, (255, 6, 51)),
        ("sofa", True, (11, 102, 255)),
        ("shelf", True, (255, 7, 71)),
        ("house", False, (255, 9, 224)),
        ("sea", False, (9, 7, 230)),
        ("mirror", True, (220, 220, 220)),
        ("rug", False, (255, 9, 92)),
        ("field", False, (112, 9, 255)),
        ("armchair", True, (8, 255, 214)),
        ("seat", True, (7, 255, 224)),
        ("fence", True, (255, 184, 6)),
        ("desk", True, (10, 255, 71)),
        ("rock", False, (255, 41, 10)),
        ("wardrobe", True, (7, 255, 255)),
        ("lamp", True, (224, 255, 8)),
        ("bathtub", True, (102, 8, 255)),
        ("railing", True, (255, 61, 6)),
        ("cushion", True, (255, 194, 7)),
        ("base", False, (255, 122, 8)),
        ("box", True, (0, 255, 20)),
        ("column", True, (255, 8, 41)),
        ("signboard", True, (255, 5, 153)),
        ("chest of drawers", True, (6, 51, 255)),
        ("counter", True, (235, 12, 255)),
        ("sand", False, (160, 150, 20)),
        ("sink", True, (0, 163, 255)),
        ("skyscraper", False, (140, 140, 140)),
        ("fireplace", True, (250, 10, 15)),
        ("refrigerator", True, (20, 255, 0)),
        ("grandstand", False, (31, 255, 0)),
        ("path", False, (255, 31, 0)),
        ("stairs", True, (255, 224, 0)),
        ("runway", False, (153, 255, 0)),
        ("case", True, (0, 0, 255)),
        ("pool table", True, (255, 71, 0)),
        ("pillow", True, (0, 235, 255)),
        ("screen door", True, (0, 173, 255)),
        ("stairway", False, (31, 0, 255)),
        ("river", False, (11, 200, 200)),
        ("bridge", False, (255, 82, 0)),
        ("bookcase", True, (0, 255, 245)),
        ("blind", False, (0, 61, 255)),
        ("coffee table", True, (0, 255, 112)),
        ("toilet", True, (0, 255, 133)),
        ("flower", True, (255, 0, 0)),
        ("book", True, (255, 163, 0)),
        ("hill", False, (255, 102, 0)),
        ("bench", True, (194, 255, 0)),
        ("countertop", True, (0, 143, 255)),
        ("stove", True, (51, 255, 0)),
        ("palm", True, (0, 82, 255)),
        ("kitchen island", True, (0, 255, 41)),
        ("computer", True, (0, 255, 173)),
        ("swivel chair", True, (10, 0, 255)),
        ("boat", True, (173, 255, 0)),
        ("bar", False, (0, 255, 153)),
        ("arcade machine", True, (255, 92, 0)),
        ("hovel", False, (255, 0, 255)),
        ("bus", True, (255, 0, 245)),
        ("towel", True, (255, 0, 102)),
        ("light", True, (255, 173, 0)),
        ("truck", True, (255, 0, 20)),
        ("tower", False, (255, 184, 184)),
        ("chandelier", True, (0, 31, 255)),
        ("awning", True, (0, 255, 61)),
        ("streetlight", True, (0, 71, 255)),
        ("booth", True, (255, 0, 204)),
        ("television receiver", True, (0, 255, 194)),
        ("airplane", True, (0, 255, 82)),
        ("dirt track", False, (0, 10, 255)),
        ("apparel", True, (0, 112, 255)),
        ("pole", True, (51, 0, 255)),
        ("land", False, (0, 194, 255)),
        ("bannister", True, (0, 122, 255)),
        ("escalator", False, (0, 255, 163)),
        ("ottoman", True, (255, 153, 0)),
        ("bottle", True, (0, 255, 10)),
        ("buffet", False, (255, 112, 0)),
        ("poster", False, (143, 255, 0)),
        ("stage", False, (82, 0, 255)),
        ("van", True, (163, 255, 0)),
        ("ship", True, (255, 235, 0)),
        ("fountain", True, (8, 184, 170)),
        ("conveyer belt", False, (133, 0, 255)),
        ("canopy", False, (0, 255, 92)),
        ("washer", True, (184, 0, 255)),
        ("plaything", True, (255, 0, 31)),
        ("swimming pool", False, (0, 184, 255)),
        ("stool", True, (0, 214, 255)),
        ("barrel", True, (255, 0, 112)),
        ("basket", True, (92, 255, 0)),
        ("waterfall", False, (0, 224, 255)),
        ("tent", False, (112, 224, 255)),
        ("bag", True, (70, 184, 160)),
        ("minibike", True, (163, 0, 255)),
        ("cradle", False, (153, 0, 255)),
        ("oven", True, (71, 255, 0)),
        ("ball", True, (255, 0, 163)),
        ("food", True, (255, 204, 0)),
        ("step", True, (255, 0, 143)),
        ("tank", False, (0, 255, 235)),
        ("trade name", True, (133, 255, 0)),
        ("microwave", True, (255, 0, 235)),
        ("pot", True, (245, 0, 255)),
        ("animal", True, (255, 0, 122)),
        ("bicycle", True, (255, 245, 0)),
        ("lake", False, (10, 190, 212)),
        ("dishwasher", True, (214, 255, 0)),
        ("screen", True, (0, 204, 255)),
        ("blanket", False, (20, 0, 255)),
        ("sculpture", True, (255, 255, 0)),
        ("hood", True, (0, 153, 255)),
        ("sconce", True, (0, 41, 255)),
        ("vase", True, (0, 255, 204)),
        ("traffic light", True, (41, 0, 255)),
        ("tray", True, (41, 255, 0)),
        ("ashcan", True, (173, 0, 255)),
        ("fan", True, (0, 245, 255)),
        ("pier", False, (71, 0, 255)),
        ("crt screen", False, (122, 0, 255)),
        ("plate", True, (0, 255, 184)),
        ("monitor", True, (0, 92, 255)),
        ("bulletin board", True, (184, 255, 0)),
        ("shower", False, (0, 133, 255)),
        ("radiator", True, (255, 214, 0)),
        ("glass", True, (25, 194, 194)),
        ("clock", True, (102, 255, 0)),
        ("flag", True, (92, 0, 255)),
)

# The built-in synthetic dataset (deeplab2.data.synthetic).
_SYNTHETIC = (
        # (name, is thing, color)
        ("sky", False, (70, 130, 180)),
        ("building", False, (110, 110, 110)),
        ("ground", False, (140, 100, 60)),
        ("disc", True, (220, 20, 60)),
        ("box", True, (0, 80, 230)),
        ("triangle", True, (250, 200, 0)),
)


def _cityscapes() -> DatasetInfo:
    return DatasetInfo(
            name="cityscapes",
            class_names=tuple(c[0] for c in _CITYSCAPES),
            colors=tuple(c[2] for c in _CITYSCAPES),
            thing_ids=tuple(range(11, 19)),
            ignore_label=255,
            label_divisor=1000,
            stuff_area_limit=2048,
            source_ids=tuple(c[1] for c in _CITYSCAPES))


def _coco() -> DatasetInfo:
    return DatasetInfo(
            name="coco",
            class_names=("void",) + tuple(c[1] for c in _COCO),
            colors=((0, 0, 0),) + tuple(c[3] for c in _COCO),
            thing_ids=tuple(i + 1 for i, c in enumerate(_COCO) if c[2]),
            ignore_label=0,
            label_divisor=256,
            stuff_area_limit=4096,
            source_ids=(0,) + tuple(c[0] for c in _COCO))


def _mapillary_vistas() -> DatasetInfo:
    return DatasetInfo(
            name="mapillary_vistas",
            class_names=tuple(c[0] for c in _MAPILLARY_VISTAS),
            colors=tuple(c[2] for c in _MAPILLARY_VISTAS),
            thing_ids=tuple(i for i, c in enumerate(_MAPILLARY_VISTAS) if c[1]),
            ignore_label=255,
            label_divisor=1000,
            stuff_area_limit=4096,
            source_ids=tuple(range(1, len(_MAPILLARY_VISTAS) + 1)))


def _mapillary_vistas_v2() -> DatasetInfo:
    return DatasetInfo(
            name="mapillary_vistas_v2",
            class_names=tuple(c[1] for c in _MAPILLARY_VISTAS_V2),
            colors=tuple(c[3] for c in _MAPILLARY_VISTAS_V2),
            thing_ids=tuple(i for i, c in enumerate(_MAPILLARY_VISTAS_V2) if c[2]),
            ignore_label=255,
            label_divisor=1000,
            stuff_area_limit=4096,
            source_ids=tuple(c[0] for c in _MAPILLARY_VISTAS_V2))


def _ade20k() -> DatasetInfo:
    return DatasetInfo(
            name="ade20k",
            class_names=("void",) + tuple(c[0] for c in _ADE20K),
            colors=((0, 0, 0),) + tuple(c[2] for c in _ADE20K),
            thing_ids=tuple(i + 1 for i, c in enumerate(_ADE20K) if c[1]),
            ignore_label=0,
            label_divisor=1000,
            stuff_area_limit=4096,
            source_ids=(-1,) + tuple(range(len(_ADE20K))))


def _synthetic() -> DatasetInfo:
    return DatasetInfo(
            name="synthetic",
            class_names=tuple(c[0] for c in _SYNTHETIC),
            colors=tuple(c[2] for c in _SYNTHETIC),
            thing_ids=tuple(i for i, c in enumerate(_SYNTHETIC) if c[1]),
            ignore_label=255,
            label_divisor=1000,
            stuff_area_limit=64,
            source_ids=tuple(range(len(_SYNTHETIC))))


_REGISTRY: Dict[str, DatasetInfo] = {
        info.name: info for info in (_cityscapes(), _coco(), _mapillary_vistas(),
                                     _mapillary_vistas_v2(), _ade20k(), _synthetic())
}


class UnknownDatasetError(KeyError):
    """A dataset that cannot be resolved: a name that is not registered (or,
    as its subclass DatasetDescriptorError, an unreadable or invalid .json
    descriptor)."""

    def __str__(self):  # the message, without KeyError's quotes
        return str(self.args[0])


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the descriptor registered under `name` (e.g. "cityscapes")."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(f"Unknown dataset {name!r}; known datasets: "
                                  f"{', '.join(sorted(_REGISTRY))}, or the path of a .json "
                                  "dataset descriptor (README: Your own dataset).") from None


def dataset_names() -> Tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def dataset_to_dict(info: DatasetInfo) -> Dict:
    """The descriptor as JSON values (the inverse of `dataset_from_dict`)."""
    return {
        "name": info.name,
        "class_names": list(info.class_names),
        "colors": [list(color) for color in info.colors],
        "thing_ids": list(info.thing_ids),
        "ignore_label": info.ignore_label,
        "label_divisor": info.label_divisor,
        "stuff_area_limit": info.stuff_area_limit,
        "source_ids": list(info.source_ids),
    }


def dataset_from_dict(values: Dict, source: str = "the descriptor") -> DatasetInfo:
    """A descriptor from JSON values; a clear error names `source` and the field."""
    fields = {f.name for f in dataclasses.fields(DatasetInfo)}
    if not isinstance(values, dict):
        raise ValueError(f"{source}: a dataset descriptor must be a JSON object, "
                         f"got {type(values).__name__}.")
    missing = sorted(fields - set(values))
    unknown = sorted(set(values) - fields)
    if missing or unknown:
        raise ValueError(f"{source}: dataset descriptor fields missing {missing}, "
                         f"unknown {unknown}.")
    try:
        return DatasetInfo(
            name=str(values["name"]),
            class_names=tuple(str(n) for n in values["class_names"]),
            colors=tuple(tuple(int(c) for c in color) for color in values["colors"]),
            thing_ids=tuple(int(t) for t in values["thing_ids"]),
            ignore_label=int(values["ignore_label"]),
            label_divisor=int(values["label_divisor"]),
            stuff_area_limit=int(values["stuff_area_limit"]),
            source_ids=tuple(int(s) for s in values["source_ids"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: invalid dataset descriptor: {error}") from None


def resolve_dataset(dataset) -> DatasetInfo:
    """A DatasetInfo given as itself, a registered name or the path of a .json
    descriptor (deeplab2.data.custom_dataset): what every `dataset` argument,
    flag and Gin binding accepts."""
    if isinstance(dataset, DatasetInfo):
        return dataset
    if isinstance(dataset, str) and dataset.lower().endswith(".json"):
        from deeplab2.data.custom_dataset import load_dataset_descriptor  # imports this

        return load_dataset_descriptor(dataset)
    if isinstance(dataset, str):
        return get_dataset_info(dataset)
    raise TypeError(f"dataset must be a DatasetInfo, a dataset name or the path of a .json "
                    f"descriptor, got {dataset!r}.")
