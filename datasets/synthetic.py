"""Synthetic RRSIS scenes: procedurally generated aerial images, written in the RRSIS-D layout.

Each scene is a textured ground (grass, soil, concrete, sometimes an unannotated road) with several
instances of a few categories, each with a colour and a size. Every referring expression is built to
identify its target uniquely among the scene (colour, size, absolute position, relation to another
object, or a combination), so the class alone is not enough: see docs/datasets/synthetic.md.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask
from rrsis_bench.datasets.rrsisd import SPLITS, RRSISDDataset, decode_segmentation

GENERATOR_VERSION = "synthetic-v1"
DEFAULT_NUM_IMAGES = {"train": 600, "val": 100, "test": 200}
REFS_PER_IMAGE = 4
SINGLETON_WEIGHT = 3.0
SIZE_RATIO = 1.4
JPEG_QUALITY = 90
MIN_IMAGE_SIZE = 128  # below this, vehicles shrink to a few pixels

PALETTE = {
    "red": (190, 45, 40),
    "white": (236, 236, 230),
    "blue": (45, 85, 190),
    "grey": (118, 121, 128),
    "yellow": (226, 196, 46),
    "black": (32, 32, 36),
    "green": (48, 135, 82),
    "turquoise": (64, 196, 204),
}
TERRAINS = {
    "grass": (84, 116, 56),
    "dry grass": (128, 128, 78),
    "soil": (138, 110, 82),
    "concrete": (168, 162, 146),
}
ASPHALT = (78, 78, 82)


@dataclass(frozen=True)
class Category:
    """One object category: its id, nouns (first is the COCO name), colours and instances per scene."""

    id: int
    nouns: tuple[str, ...]
    colours: tuple[str, ...]
    counts: tuple[int, ...]
    count_weights: tuple[float, ...]
    scene_weight: float

    @property
    def name(self) -> str:
        return self.nouns[0]


# Placement order: large things first, so small ones fill the gaps.
CATEGORIES = (
    Category(1, ("building",), ("white", "grey", "red", "blue"), (1, 2, 3, 4), (0.3, 0.35, 0.2, 0.15), 1.2),
    Category(2, ("tennis court", "court"), ("green", "blue", "red"), (1, 2, 3), (0.45, 0.4, 0.15), 0.7),
    Category(3, ("airplane", "plane", "aircraft"), ("white", "grey", "blue"), (1, 2, 3, 4), (0.3, 0.3, 0.25, 0.15), 0.9),
    Category(4, ("swimming pool", "pool"), ("blue", "turquoise", "green"), (1, 2, 3), (0.3, 0.4, 0.3), 0.8),
    Category(5, ("storage tank", "tank", "oil tank"), ("white", "grey", "red"), (1, 2, 3, 4, 5), (0.15, 0.25, 0.25, 0.2, 0.15), 1.0),
    Category(6, ("vehicle", "car"), ("red", "white", "blue", "black", "yellow"), (1, 2, 3, 4, 5, 6), (0.08, 0.17, 0.25, 0.2, 0.17, 0.13), 1.3),
)

# How often each expression type is picked when a target admits several (relations kept rare:
# they are the hardest cue for a small model).
TYPE_WEIGHTS = {"class": 2.0, "colour": 3.0, "size": 3.0, "position": 3.0, "relation": 1.0, "combination": 2.0}


# --------------------------------------------------------------------------- scene geometry


@dataclass
class SceneObject:
    """A placed object: its annotation, the mask pycocotools decodes from it, and its pose."""

    category: Category
    colour: str
    segmentation: list | dict
    mask: np.ndarray
    centre: tuple[float, float]
    angle: float
    half_long: float
    half_short: float
    # Derived from the mask: bounding box (inclusive), pixel area and centroid.
    x0: int = field(init=False)
    y0: int = field(init=False)
    x1: int = field(init=False)
    y1: int = field(init=False)
    area: int = field(init=False)
    cx: float = field(init=False)
    cy: float = field(init=False)

    def __post_init__(self) -> None:
        rows, cols = np.flatnonzero(self.mask.any(axis=1)), np.flatnonzero(self.mask.any(axis=0))
        self.x0, self.y0, self.x1, self.y1 = int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
        ys, xs = np.nonzero(self.mask[self.y0 : self.y1 + 1, self.x0 : self.x1 + 1])
        self.area = int(len(xs))
        self.cx, self.cy = float(xs.mean()) + self.x0, float(ys.mean()) + self.y0

    def window(self, pad: int) -> tuple[slice, slice]:
        """Bounding box plus ``pad`` pixels (clipped): painting works there instead of on the whole image."""
        height, width = self.mask.shape
        return (slice(max(0, self.y0 - pad), min(height, self.y1 + pad + 1)),
                slice(max(0, self.x0 - pad), min(width, self.x1 + pad + 1)))


def _rectangle(half_long: float, half_short: float) -> np.ndarray:
    return np.array([(-half_long, -half_short), (half_long, -half_short), (half_long, half_short), (-half_long, half_short)])


def _l_shape(half_long: float, half_short: float, cut_long: float, cut_short: float) -> np.ndarray:
    """Rectangle with one corner rectangle removed."""
    a, b = half_long, half_short
    return np.array([(-a, -b), (a, -b), (a, b - cut_short), (a - cut_long, b - cut_short), (a - cut_long, b), (-a, b)])


def _circle(radius: float, vertices: int = 32) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _airplane(half_length: float) -> np.ndarray:
    """Cross-shaped outline: pointed nose at -u, swept wings, tail plane; symmetric about v = 0."""
    a = half_length
    body, wing, tail = 0.13 * a, 0.95 * a, 0.38 * a
    upper = [
        (-a, 0.0), (-a + 2 * body, -body), (-0.25 * a, -body), (0.05 * a, -wing), (0.25 * a, -wing),
        (0.15 * a, -body), (0.6 * a, -body), (0.8 * a, -tail), (a, -tail), (a, 0.0),
    ]  # fmt: skip
    lower = [(u, -v) for u, v in reversed(upper[1:-1])]
    return np.array(upper + lower)


def _to_world(points: np.ndarray, centre: tuple[float, float], angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = points[:, 0], points[:, 1]
    return np.stack([centre[0] + u * cos - v * sin, centre[1] + u * sin + v * cos], axis=1)


def _local_coords(window: tuple[slice, slice], centre: tuple[float, float], angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel coordinates in ``window`` (u along the object's long axis, v across), at pixel centres."""
    rows, cols = window
    dy = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - centre[1]
    dx = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + 0.5 - centre[0]
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _polygon_annotation(points: np.ndarray, size: int) -> tuple[list, np.ndarray]:
    """COCO polygon and the exact mask the RRSIS-D reader will decode from it."""
    segmentation = [[round(float(c), 2) for c in points.reshape(-1)]]
    return segmentation, decode_segmentation(segmentation, size, size)


def _rle_annotation(mask: np.ndarray, uncompressed: bool) -> tuple[dict, np.ndarray]:
    """COCO RLE (compressed string counts, or uncompressed list counts) and its decoded mask."""
    if uncompressed:
        flat = mask.flatten(order="F").astype(np.int8)
        change_points = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        segmentation = {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], change_points])).tolist()}
    else:
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        segmentation = {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return segmentation, decode_segmentation(segmentation, *mask.shape)


def _blob_mask(rng: np.random.Generator, size: int, centre: tuple[float, float], angle: float, radius: float,
               stretch: float) -> np.ndarray:
    """Irregular pool outline: a stretched circle whose radius wobbles with a few low harmonics."""
    window = _square_window(centre, 1.4 * radius * stretch + 1, size)
    u, v = _local_coords(window, centre, angle)
    theta, rho = np.arctan2(v, u / stretch), np.hypot(u / stretch, v)
    wobble = sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    mask = np.zeros((size, size), dtype=bool)
    mask[window] = rho < radius * (1 + wobble)
    return mask


def _square_window(centre: tuple[float, float], reach: float, size: int) -> tuple[slice, slice]:
    """Rows and columns within ``reach`` of ``centre``, clipped to the image."""
    def span(c: float) -> slice:
        return slice(max(0, int(c - reach)), min(size, int(np.ceil(c + reach)) + 1))

    return span(centre[1]), span(centre[0])


def _propose_shape(rng: np.random.Generator, category: Category, scale: float) -> tuple[np.ndarray | None, dict]:
    """Local outline (None for the RLE pool) and pose parameters for one instance."""
    name = category.name
    quarter_turn = rng.integers(4) * np.pi / 2
    if name == "vehicle":
        length = rng.uniform(12, 17) * scale
        half_short = length * rng.uniform(0.22, 0.28)
        return _rectangle(length / 2, half_short), {"angle": rng.uniform(0, np.pi), "half_long": length / 2, "half_short": half_short}
    if name == "building":
        a, b = sorted(rng.uniform(14, 45, size=2) * scale, reverse=True)
        tilt = 0.0 if rng.random() < 0.6 else rng.uniform(-0.35, 0.35)
        outline = _l_shape(a, b, rng.uniform(0.7, 1.1) * a, rng.uniform(0.7, 1.1) * b) if rng.random() < 0.35 else _rectangle(a, b)
        return outline, {"angle": quarter_turn + tilt, "half_long": a, "half_short": b}
    if name == "tennis court":
        a = rng.uniform(32, 46) * scale
        b = a * rng.uniform(0.45, 0.52)
        return _rectangle(a, b), {"angle": quarter_turn + rng.uniform(-0.15, 0.15), "half_long": a, "half_short": b}
    if name == "airplane":
        a = rng.uniform(14, 28) * scale
        return _airplane(a), {"angle": rng.uniform(0, 2 * np.pi), "half_long": a, "half_short": 0.95 * a}
    if name == "storage tank":
        radius = rng.uniform(6, 18) * scale
        return _circle(radius), {"angle": 0.0, "half_long": radius, "half_short": radius}
    radius, stretch = rng.uniform(9, 20) * scale, rng.uniform(1.0, 1.5)
    return None, {"angle": rng.uniform(0, np.pi), "half_long": radius * stretch, "half_short": radius, "stretch": stretch}


def _try_place(rng: np.random.Generator, category: Category, size: int, blocked: np.ndarray) -> SceneObject | None:
    """Draw a shape at a random spot; None if it leaves the image or touches a blocked pixel."""
    scale = size / 256
    outline, pose = _propose_shape(rng, category, scale)
    reach = 1.4 * pose["half_long"] if outline is None else float(np.hypot(*outline.T).max())
    low, high = reach + 2, size - reach - 2
    if low >= high:
        return None
    centre = (float(rng.uniform(low, high)), float(rng.uniform(low, high)))
    if outline is None:
        blob = _blob_mask(rng, size, centre, pose["angle"], pose["half_short"], pose["stretch"])
        if (blob & blocked).any():
            return None
        segmentation, mask = _rle_annotation(blob, uncompressed=rng.random() < 0.35)
    else:
        points = _to_world(outline, centre, pose["angle"])
        if _polygon_hits(points, blocked):
            return None
        segmentation, mask = _polygon_annotation(points, size)
    if not mask.any() or (mask & blocked).any():
        return None
    colour = str(rng.choice(category.colours))
    return SceneObject(category, colour, segmentation, mask, centre, pose["angle"], pose["half_long"], pose["half_short"])


def _polygon_hits(points: np.ndarray, blocked: np.ndarray) -> bool:
    """Quick overlap test: rasterise the polygon in its own small window (the exact test follows)."""
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    local = decode_segmentation([(points - (x0, y0)).reshape(-1).tolist()], int(y1 - y0), int(x1 - x0))
    return bool((local & blocked[y0:y1, x0:x1]).any())


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation by shifting; scipy-free and fast enough at these sizes."""
    grown = mask.copy()
    for _ in range(radius):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= step[:, :-1].copy()
        step[:, :-1] |= step[:, 1:].copy()
        grown = step
    return grown


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _road(rng: np.random.Generator, size: int) -> np.ndarray | None:
    """An unannotated straight road (half of the scenes): a distractor that only vehicles may cover."""
    if rng.random() < 0.5:
        return None
    width = rng.uniform(12, 18) * size / 256
    offset = rng.uniform(0.2, 0.8) * size
    coords = np.arange(size) + 0.5
    band = np.abs(coords - offset) < width / 2
    return np.broadcast_to(band[:, None] if rng.random() < 0.5 else band[None, :], (size, size)).copy()


@dataclass
class Scene:
    size: int
    road: np.ndarray | None
    objects: list[SceneObject]


def _compose_scene(rng: np.random.Generator, size: int) -> Scene:
    """Pick 2–4 categories and place their instances without overlap (3 px apart at 256 px)."""
    road = _road(rng, size)
    scene_weights = np.array([c.scene_weight for c in CATEGORIES])
    num_categories = int(rng.choice([2, 3, 4], p=[0.3, 0.45, 0.25]))
    chosen = set(rng.choice(len(CATEGORIES), size=num_categories, replace=False, p=scene_weights / scene_weights.sum()).tolist())
    occupied = np.zeros((size, size), dtype=bool)
    gap = max(1, round(3 * size / 256))
    objects: list[SceneObject] = []
    for index, category in enumerate(CATEGORIES):
        if index not in chosen:
            continue
        wanted = int(rng.choice(category.counts, p=category.count_weights))
        blocked = occupied if road is None or category.name == "vehicle" else occupied | road
        placed = 0
        for _ in range(12 * wanted):
            if placed == wanted:
                break
            candidate = _try_place(rng, category, size, blocked)
            if candidate is not None:
                objects.append(candidate)
                window = candidate.window(pad=gap + 1)
                grown = _dilate(candidate.mask[window], gap)
                occupied[window] |= grown
                if blocked is not occupied:
                    blocked[window] |= grown
                placed += 1
    return Scene(size, road, objects)


# --------------------------------------------------------------------------- referring expressions


def _group(scene: Scene, target: SceneObject) -> list[SceneObject]:
    return [o for o in scene.objects if o.category is target.category]


_EXTREMES = (  # (coordinate, sign, phrases for a pair, phrases for three or more)
    ("cx", -1, ("the {n} on the left", "the left {n}"), ("the leftmost {n}", "the {n} furthest to the left")),
    ("cx", 1, ("the {n} on the right", "the right {n}"), ("the rightmost {n}", "the {n} furthest to the right")),
    ("cy", -1, ("the {n} at the top", "the upper {n}"), ("the topmost {n}", "the {n} closest to the top")),
    ("cy", 1, ("the {n} at the bottom", "the lower {n}"), ("the bottommost {n}", "the {n} closest to the bottom")),
)


def _position_phrases(target: SceneObject, group: list[SceneObject], noun: str, size: int) -> list[str]:
    """Absolute position among the group: extremes along an axis, image corners, the centre."""
    others = [o for o in group if o is not target]
    if not others:
        return []
    phrases = []
    margin = 0.08 * size
    for coordinate, sign, pair_phrases, many_phrases in _EXTREMES:
        value = sign * getattr(target, coordinate)
        if all(value > sign * getattr(o, coordinate) + margin for o in others):
            phrases += [p.format(n=noun) for p in (pair_phrases if len(group) == 2 else many_phrases)]
    phrases += _corner_phrases(target, others, noun, size)
    half = size / 2
    if np.hypot(target.cx - half, target.cy - half) < 0.15 * size and all(
        np.hypot(o.cx - half, o.cy - half) > 0.3 * size for o in others
    ):
        phrases += [f"the {noun} in the middle", f"the {noun} in the centre of the image"]
    return phrases


def _corner_phrases(target: SceneObject, others: list[SceneObject], noun: str, size: int) -> list[str]:
    """'top left' etc. when the target is clearly inside a quadrant and no other instance is near it."""
    half = size / 2
    sx, sy = np.sign(target.cx - half), np.sign(target.cy - half)
    if abs(target.cx - half) < 0.1 * size or abs(target.cy - half) < 0.1 * size:
        return []
    if not all(sx * (o.cx - half) < -0.05 * size or sy * (o.cy - half) < -0.05 * size for o in others):
        return []
    corner = f"{'top' if sy < 0 else 'bottom'} {'left' if sx < 0 else 'right'}"
    return [f"the {noun} in the {corner} corner", f"the {corner} {noun}", f"the {noun} at the {corner}"]


def _size_phrases(target: SceneObject, group: list[SceneObject], noun: str) -> list[str]:
    """Largest / smallest when the target differs in area by SIZE_RATIO or more from every other instance."""
    others = [o.area for o in group if o is not target]
    if not others:
        return []
    pair = len(group) == 2
    if target.area >= SIZE_RATIO * max(others):
        return [f"the large {noun}", f"the bigger {noun}"] if pair else [f"the largest {noun}", f"the biggest {noun}"]
    if SIZE_RATIO * target.area <= min(others):
        return [f"the small {noun}", f"the smaller {noun}"] if pair else [f"the smallest {noun}", f"the tiniest {noun}"]
    return []


def _colour_phrases(target: SceneObject, group: list[SceneObject], noun: str) -> list[str]:
    if any(o.colour == target.colour for o in group if o is not target):
        return []
    return [f"the {target.colour} {noun}", f"the {noun} that is {target.colour}", f"{target.colour} {noun}"]


def _combination_phrases(target: SceneObject, group: list[SceneObject], noun: str, size: int) -> list[str]:
    """Colour plus size or position, only when the colour alone names several instances."""
    same_colour = [o for o in group if o.colour == target.colour]
    if len(same_colour) < 2:
        return []
    coloured_noun = f"{target.colour} {noun}"
    return _size_phrases(target, same_colour, coloured_noun) + _position_phrases(target, same_colour, coloured_noun, size)


def _anchor_names(rng: np.random.Generator, scene: Scene) -> dict[int, str]:
    """Objects that a short phrase names uniquely (only one of their class, or a unique colour)."""
    names = {}
    for index, obj in enumerate(scene.objects):
        group = _group(scene, obj)
        noun = str(rng.choice(obj.category.nouns))
        if len(group) == 1:
            names[index] = f"the {noun}"
        elif sum(o.colour == obj.colour for o in group) == 1:
            names[index] = f"the {obj.colour} {noun}"
    return names


_SIDES = (("left", ("left of", "to the left of")), ("right", ("right of", "to the right of")),
          ("above", ("above",)), ("below", ("below", "under")))


def _beyond(obj: SceneObject, anchor: SceneObject, side: str) -> float:
    """How far ``obj``'s centre lies outside ``anchor``'s box on ``side`` (negative: not beyond it)."""
    return {"left": anchor.x0 - obj.cx, "right": obj.cx - anchor.x1,
            "above": anchor.y0 - obj.cy, "below": obj.cy - anchor.y1}[side]


def _distance(obj: SceneObject, anchor: SceneObject) -> float:
    return float(np.hypot(obj.cx - anchor.cx, obj.cy - anchor.cy))


def _relation_phrases(target: SceneObject, group: list[SceneObject], noun: str, scene: Scene,
                      anchors: dict[int, str]) -> list[str]:
    """Position relative to a uniquely named object of another class: nearest, left/right/above/below."""
    others = [o for o in group if o is not target]
    if not others:
        return []
    margin = 0.03 * scene.size
    phrases = []
    for index, anchor_name in anchors.items():
        anchor = scene.objects[index]
        if anchor.category is target.category:
            continue
        if _distance(target, anchor) <= 0.6 * min(_distance(o, anchor) for o in others):
            phrases += [f"the {noun} nearest to {anchor_name}", f"the {noun} closest to {anchor_name}"]
        for side, words in _SIDES:
            if _beyond(target, anchor, side) > margin and all(_beyond(o, anchor, side) < -margin for o in others):
                phrases += [f"the {noun} {word} {anchor_name}" for word in words]
    return phrases


def _expression_candidates(rng: np.random.Generator, scene: Scene, target: SceneObject,
                           anchors: dict[int, str]) -> dict[str, list[str]]:
    """Every expression type that names ``target`` uniquely, with its phrasings."""
    group = _group(scene, target)
    noun = str(rng.choice(target.category.nouns))
    candidates = {
        "class": [f"the {noun}", f"the only {noun}"] if len(group) == 1 else [],
        "colour": _colour_phrases(target, group, noun),
        "size": _size_phrases(target, group, noun),
        "position": _position_phrases(target, group, noun, scene.size),
        "relation": _relation_phrases(target, group, noun, scene, anchors),
        "combination": _combination_phrases(target, group, noun, scene.size),
    }
    return {kind: phrases for kind, phrases in candidates.items() if phrases}


def _referring_expressions(rng: np.random.Generator, scene: Scene) -> list[tuple[int, str, str]]:
    """Up to REFS_PER_IMAGE (object index, expression type, text), one per distinct target.

    Scenes hold few single-instance objects, so those are drawn with SINGLETON_WEIGHT to make about
    one target in six the only one of its class; the other five have same-class distractors.
    """
    anchors = _anchor_names(rng, scene)
    candidates = {i: _expression_candidates(rng, scene, obj, anchors) for i, obj in enumerate(scene.objects)}
    describable = [i for i, kinds in candidates.items() if kinds]
    if not describable:
        return []
    weights = np.array([1.0 if len(_group(scene, scene.objects[i])) > 1 else SINGLETON_WEIGHT for i in describable])
    chosen = rng.choice(describable, size=min(REFS_PER_IMAGE, len(describable)), replace=False, p=weights / weights.sum())
    expressions = []
    for index in sorted(chosen.tolist()):
        kinds = list(candidates[index])
        kind_weights = np.array([TYPE_WEIGHTS[kind] for kind in kinds])
        kind = kinds[rng.choice(len(kinds), p=kind_weights / kind_weights.sum())]
        expressions.append((index, kind, str(rng.choice(candidates[index][kind]))))
    return expressions


# --------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.BILINEAR))


def _paint_background(rng: np.random.Generator, size: int, road: np.ndarray | None) -> np.ndarray:
    """Two blended terrains with patchy and fine texture, plus the road with a dashed centre line."""
    names = list(TERRAINS)
    base, patch = (np.array(TERRAINS[names[i]], dtype=np.float32) for i in rng.choice(len(names), size=2, replace=False))
    blend = np.clip((_smooth_noise(rng, size, 4) - 0.5) * 4 + 0.5, 0, 1)
    # Texture is a brightness change only (one channel) and channels are built one by one: fast.
    brightness = 0.87 + 0.2 * _smooth_noise(rng, size, 24) + 0.08 * rng.random((size, size), dtype=np.float32)
    blended_brightness = blend * brightness
    pixels = np.stack([b * brightness + (p - b) * blended_brightness for b, p in zip(base, patch, strict=True)], axis=-1)
    if road is not None:
        pixels[road] = np.array(ASPHALT) + rng.normal(0, 3, (int(road.sum()), 3))
        pixels[_road_dashes(road)] = (205, 200, 185)
    return pixels


def _road_dashes(road: np.ndarray) -> np.ndarray:
    """Dashed line along the middle of the road band (8 on, 8 off at 256 px)."""
    horizontal = road[:, 0].any()
    band = road[:, 0] if horizontal else road[0, :]
    across = np.flatnonzero(band)
    centre_line = np.zeros(band.shape, dtype=bool)
    centre_line[across[len(across) // 2 - 1 : len(across) // 2 + 1]] = True
    along = (np.arange(len(band)) // max(1, round(8 * len(band) / 256))) % 2 == 0
    return np.outer(centre_line, along) if horizontal else np.outer(along, centre_line)


def _paint_shadows(pixels: np.ndarray, objects: list[SceneObject], size: int) -> None:
    """Raised objects cast a short shadow down-right; flat ones (courts, pools) do not."""
    offset = max(1, round(2 * size / 256))
    for obj in objects:
        if obj.category.name in ("tennis court", "swimming pool"):
            continue
        window = obj.window(pad=offset + 1)
        mask = obj.mask[window]
        shadow = np.zeros_like(mask)
        shadow[offset:, offset:] = mask[:-offset, :-offset]
        pixels[window][shadow & ~mask] *= 0.6


def _paint_object(rng: np.random.Generator, pixels: np.ndarray, obj: SceneObject, size: int) -> None:
    """Fill exactly the decoded mask with the object's colour, then add details inside the mask only."""
    window = obj.window(pad=2)
    mask, view = obj.mask[window], pixels[window]
    colour = np.array(PALETTE[obj.colour], dtype=np.float32) + rng.integers(-10, 11, 3)
    view[mask] = colour + rng.normal(0, 3, (int(mask.sum()), 3))
    u, v = _local_coords(window, obj.centre, obj.angle)
    name = obj.category.name
    if name == "vehicle":  # dark windscreen towards the front
        view[mask & (u > 0.2 * obj.half_long) & (u < 0.55 * obj.half_long)] = colour * 0.45
    elif name == "building":  # gable roof: one half lit, the other in shade
        view[mask & (v > 0)] *= 1.08
    elif name == "storage tank":  # floating-roof ring
        view[mask & (np.abs(np.hypot(u, v) - 0.6 * obj.half_long) < 0.8)] *= 0.8
    elif name == "tennis court":
        view[mask & _court_lines(u, v, obj.half_long, obj.half_short)] = (238, 238, 232)
    if name == "swimming pool":  # light coping around the water
        view[mask & ~_erode(mask, max(1, round(size / 256)))] = (226, 222, 208)
    else:  # darker outline so neighbouring same-colour objects stay separable
        view[mask & ~_erode(mask, 1)] *= 0.8


def _court_lines(u: np.ndarray, v: np.ndarray, half_long: float, half_short: float) -> np.ndarray:
    """Tennis-court markings: outline, net, service lines and the centre service line (≈1.4 px wide)."""
    width = 0.7
    au, av = np.abs(u), np.abs(v)
    service = 0.55 * half_long
    outline = (np.abs(au - (half_long - 2)) < width) | (np.abs(av - (half_short - 2)) < width)
    net = au < width
    service_lines = (np.abs(au - service) < width) & (av < half_short - 2)
    centre_line = (av < width) & (au < service)
    return outline | net | service_lines | centre_line


def _render(rng: np.random.Generator, scene: Scene) -> Image.Image:
    pixels = _paint_background(rng, scene.size, scene.road)
    _paint_shadows(pixels, scene.objects, scene.size)
    for obj in scene.objects:
        _paint_object(rng, pixels, obj, scene.size)
    return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))


# --------------------------------------------------------------------------- writing the dataset


@dataclass
class _Records:
    images: list[dict]
    annotations: list[dict]
    refs: list[dict]


def _add_scene_records(records: _Records, scene: Scene, expressions: list[tuple[int, str, str]], split: str,
                       file_name: str) -> None:
    image_id = len(records.images) + 1
    records.images.append({"id": image_id, "file_name": file_name, "height": scene.size, "width": scene.size})
    first_ann_id = len(records.annotations) + 1
    for offset, obj in enumerate(scene.objects):
        records.annotations.append({
            "id": first_ann_id + offset,
            "image_id": image_id,
            "category_id": obj.category.id,
            "segmentation": obj.segmentation,
            "bbox": [obj.x0, obj.y0, obj.x1 - obj.x0 + 1, obj.y1 - obj.y0 + 1],
            "area": obj.area,
            "iscrowd": 0,
        })
    for object_index, kind, text in expressions:
        ref_id = len(records.refs) + 1
        obj = scene.objects[object_index]
        records.refs.append({
            "ref_id": ref_id,
            "ann_id": first_ann_id + object_index,
            "image_id": image_id,
            "category_id": obj.category.id,
            "class_name": obj.category.name,
            "file_name": file_name,
            "split": split,
            "expression_type": kind,
            "sent_ids": [ref_id],
            "sentences": [{"raw": text, "sent": text, "tokens": text.split(), "sent_id": ref_id}],
        })


def generate_synthetic(folder: str | os.PathLike, *, seed: int, num_images: dict[str, int], image_size: int) -> None:
    """Write the whole dataset (all splits) into ``folder`` in the RRSIS-D layout; DONE marker last.

    Each image draws from its own generator seeded by (seed, split, index): the test split does not
    change when the train size does.
    """
    folder = Path(folder)
    image_dir = folder / "images" / "rrsisd" / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    (folder / "rrsisd").mkdir(parents=True, exist_ok=True)
    records = _Records([], [], [])
    for split_index, split in enumerate(SPLITS):
        for index in range(num_images[split]):
            rng = np.random.default_rng([seed, split_index, index])
            scene = _compose_scene(rng, image_size)
            expressions = _referring_expressions(rng, scene)
            file_name = f"{len(records.images) + 1:05d}.jpg"
            _render(rng, scene).save(image_dir / file_name, quality=JPEG_QUALITY, subsampling=0)
            _add_scene_records(records, scene, expressions, split, file_name)
    categories = [{"id": c.id, "name": c.name, "supercategory": c.name} for c in CATEGORIES]
    instances = {"images": records.images, "annotations": records.annotations, "categories": categories}
    (folder / "rrsisd" / "instances.json").write_text(json.dumps(instances, separators=(",", ":")), encoding="utf-8")
    with open(folder / "rrsisd" / "refs(unc).p", "wb") as f:
        pickle.dump(records.refs, f, protocol=4)
    (folder / "rrsisd" / "DONE").write_text(_marker_text(seed, num_images, image_size), encoding="utf-8")


def _marker_text(seed: int, num_images: dict[str, int], image_size: int) -> str:
    params = {"generator": GENERATOR_VERSION, "seed": seed, "num_images": num_images, "image_size": image_size}
    return json.dumps(params, sort_keys=True) + "\n"


def default_cache_dir(seed: int, num_images: dict[str, int], image_size: int) -> Path:
    """``$RRSIS_BENCH_CACHE`` (default ``~/.cache/rrsis_bench``) / one folder per generation setting."""
    cache = Path(os.environ.get("RRSIS_BENCH_CACHE", "~/.cache/rrsis_bench")).expanduser()
    counts = "-".join(str(num_images[split]) for split in SPLITS)
    return cache / f"{GENERATOR_VERSION}-seed{seed}-{image_size}px-{counts}"


def _is_complete(folder: Path, marker: str) -> bool:
    """True for a finished dataset with these settings; an error for anything else that is in the way."""
    done = folder / "rrsisd" / "DONE"
    if done.is_file():
        found = done.read_text(encoding="utf-8")
        if found != marker:
            raise ValueError(
                f"{folder} holds a synthetic dataset generated with other settings ({found.strip()}); "
                f"delete it or choose another root for {marker.strip()}."
            )
        return True
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} exists but holds no finished synthetic dataset (no rrsisd/DONE); delete it or choose another root."
        )
    return False


def ensure_synthetic(folder: str | os.PathLike, *, seed: int, num_images: dict[str, int], image_size: int) -> Path:
    """Generate into ``folder`` unless a finished copy is there; safe with several processes at once.

    Builds in a temporary sibling folder and renames it into place, so a reader never sees a
    half-written dataset; if another process won the race, its copy is used and ours is deleted.
    """
    folder = Path(folder).expanduser()
    marker = _marker_text(seed, num_images, image_size)
    if _is_complete(folder, marker):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        generate_synthetic(temporary, seed=seed, num_images=num_images, image_size=image_size)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    try:
        os.rename(temporary, folder)
    except OSError:  # another process renamed its finished copy into place first
        shutil.rmtree(temporary, ignore_errors=True)
        if not _is_complete(folder, marker):
            raise
    return folder


def _resolve_num_images(num_images: dict[str, int] | None) -> dict[str, int]:
    unknown = sorted(set(num_images or {}) - set(SPLITS))
    if unknown:
        raise ValueError(f"num_images has unknown split(s) {', '.join(unknown)}; valid splits are {', '.join(SPLITS)}.")
    return {split: int((num_images or {}).get(split, DEFAULT_NUM_IMAGES[split])) for split in SPLITS}


class SyntheticDataset(RRSISDDataset):
    """Synthetic aerial scenes with unique referring expressions (embedded default; generated locally in seconds).

    Generated on first use, deterministically from ``seed``, into ``root`` or the cache folder
    ``$RRSIS_BENCH_CACHE/synthetic-v1-seed{seed}-{image_size}px-{train}-{val}-{test}``, then read by
    the RRSIS-D reader. Samples also carry ``expression_type`` (class, colour, size, position,
    relation, combination).
    """

    name = "synthetic"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", *, seed: int = 0,
                 num_images: dict[str, int] | None = None, image_size: int = 256) -> None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r} for {self.name}; valid splits are {', '.join(SPLITS)}.")
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size={image_size} is too small for the synthetic scenes; use {MIN_IMAGE_SIZE} or more.")
        counts = _resolve_num_images(num_images)
        folder = Path(root) if root is not None else default_cache_dir(seed, counts, image_size)
        self.seed = seed
        super().__init__(ensure_synthetic(folder, seed=seed, num_images=counts, image_size=image_size), split)

    @property
    def class_phrases(self) -> dict[str, tuple[str, ...]]:
        """Category name → the nouns the expressions use for it (the name and its synonyms:
        ``{"vehicle": ("vehicle", "car"), "storage tank": ("storage tank", "tank", "oil tank"), ...}``)."""
        return {category.name: category.nouns for category in CATEGORIES}

    def metadata(self, index: int) -> dict[str, Any]:
        return {**super().metadata(index), "expression_type": self.ref_of(index)["expression_type"]}
