"""Furniture as named parts made of boxes, with precedence constraints and a random valid order.

A piece of furniture is a set of named parts; each part is one or more boxes (a leg set is one
part of four boxes) and lists the parts that must be in place before it (`requires`). Any
topological order of that precedence graph is a valid assembly order; `plan_steps` draws one
at random and groups parts that are fitted together (both side panels, both doors) into steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Material colours (sRGB). Names double as the adjectives used in prompts.
MATERIALS: dict[str, tuple[int, int, int]] = {
    "white": (238, 236, 228),
    "black": (74, 72, 78),
    "oak": (205, 160, 100),
    "walnut": (124, 82, 54),
    "grey": (150, 154, 160),
    "pine": (228, 200, 140),
    "blue": (72, 116, 182),
    "red": (182, 66, 56),
}
# Colours of boxes that are not made of the furniture's material.
FINISHES: dict[str, tuple[int, int, int]] = {"metal": (112, 116, 124), "fabric": (60, 128, 118)}
SIZES: tuple[str, ...] = ("small", "medium", "large")
# Camera views: name -> (yaw in degrees, negative = camera on the left; pitch above the horizon).
VIEWS: dict[str, tuple[float, float]] = {
    "front-left": (-34.0, 22.0),
    "front-right": (34.0, 22.0),
    "high front-left": (-30.0, 36.0),
}
MIN_STEPS, MAX_STEPS = 3, 8


@dataclass(frozen=True)
class Box:
    """An oriented box: centre and full size in metres (x right, y up, z towards the front),
    turned by `yaw` radians about the vertical axis; `finish` is "material", "metal" or "fabric"."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    finish: str = "material"

    def __post_init__(self) -> None:
        if len(self.center) != 3 or len(self.size) != 3:
            raise ValueError(f"center and size must have 3 values, got {self.center}, {self.size}")
        if min(self.size) <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.finish != "material" and self.finish not in FINISHES:
            raise ValueError(f"finish must be 'material' or one of {sorted(FINISHES)}, got {self.finish!r}")

    def corners(self) -> np.ndarray:
        """The 8 corners in world coordinates. # (8, 3)"""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        local = signs * np.asarray(self.size) / 2
        return local @ yaw_matrix(self.yaw).T + np.asarray(self.center)


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about +y by `yaw` radians (local +x goes to (cos, 0, -sin)). # (3, 3)"""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def slab(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, finish: str = "material") -> Box:
    """An axis-aligned box from its extents."""
    return Box(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), (x1 - x0, y1 - y0, z1 - z0), 0.0, finish)


def hinged(hinge: tuple[float, float, float], yaw: float, boxes: list[Box]) -> list[Box]:
    """Boxes given in a frame whose origin is a hinge, turned about that hinge by `yaw`."""
    rot = yaw_matrix(yaw)
    return [Box(tuple(np.asarray(hinge) + rot @ np.asarray(b.center)), b.size, b.yaw + yaw, b.finish) for b in boxes]


@dataclass(frozen=True)
class Part:
    """A named part. `targets` are (noun phrase, parts it needs) pairs naming what the part is
    fixed to in the step text; `action` and `hardware` pick the phrasing (see phrasing.py)."""

    name: str
    boxes: tuple[Box, ...]
    action: str
    requires: tuple[str, ...] = ()
    targets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hardware: str = "none"
    group: str | None = None
    plural: bool = False

    def __post_init__(self) -> None:
        if not self.boxes:
            raise ValueError(f"part {self.name!r} needs at least one box")
        if self.requires and not self.targets:
            raise ValueError(f"part {self.name!r} has requirements but no target phrase")
        for phrase, needed in self.targets:
            if not set(needed) <= set(self.requires):
                raise ValueError(f"target {phrase!r} of {self.name!r} needs parts outside its requirements")


@dataclass(frozen=True)
class Furniture:
    """One concrete piece: its kind, parameters and parts (geometry + precedence)."""

    kind: str
    params: dict
    parts: tuple[Part, ...]
    pitch_offset: float = 0.0  # extra camera pitch in degrees (beds are seen from higher up)

    def __post_init__(self) -> None:
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.kind}: duplicate part names {names}")
        for p in self.parts:
            missing = set(p.requires) - set(names)
            if missing:
                raise ValueError(f"{self.kind}: part {p.name!r} requires unknown parts {sorted(missing)}")

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"{self.kind} has no part {name!r}; parts: {self.part_names}")

    def order_is_valid(self, steps: list[list[str]]) -> bool:
        """True if every part appears once and only after the parts it requires (a part may
        share a step with a part it requires)."""
        present: set[str] = set()
        for step in steps:
            after = present | set(step)
            for name in step:
                if name in present or not set(self.part(name).requires) <= after:
                    return False
            present = after
        return True


def plan_steps(furniture: Furniture, rng: np.random.Generator, merge_prob: float = 0.5) -> list[list[str]]:
    """A random valid order of all parts, grouped into MIN_STEPS..MAX_STEPS steps.

    Kahn's algorithm with a uniform choice among the parts whose requirements are met; when the
    chosen part belongs to a group whose other members are also ready, the whole group becomes
    one step with probability `merge_prob` (always, if the guide would be too long otherwise).
    """
    for prob in (merge_prob, 1.0):
        steps = _random_steps(furniture, rng, prob)
        if len(steps) <= MAX_STEPS:
            break
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise ValueError(f"{furniture.kind} with {furniture.params} gives {len(steps)} steps")
    return steps


def _random_steps(furniture: Furniture, rng: np.random.Generator, merge_prob: float) -> list[list[str]]:
    present: set[str] = set()
    steps: list[list[str]] = []
    while len(present) < len(furniture.parts):
        ready = [p for p in furniture.parts if p.name not in present and set(p.requires) <= present]
        chosen = ready[int(rng.integers(len(ready)))]
        step = [chosen.name]
        mates = [p.name for p in ready if p.group is not None and p.group == chosen.group and p is not chosen]
        if mates and rng.random() < merge_prob:
            step = [p.name for p in ready if p.name == chosen.name or p.name in mates]
        steps.append(step)
        present |= set(step)
    return steps
