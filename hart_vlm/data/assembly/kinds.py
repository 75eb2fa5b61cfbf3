"""The furniture kinds: geometry, precedence and the closed part vocabulary of each.

Every builder takes (size, rng), draws the kind's own counts (shelves, legs,
drawers, ...) from `rng`, and returns a `Furniture` in metres with y up and z towards the
viewer. `VOCABULARY[kind]` maps every noun phrase the phrasing may use (and the checker
accepts) to the part names it denotes; a group phrase ("side panels") denotes several.
"""

from __future__ import annotations

import math

import numpy as np

from .furniture import Box, Furniture, Part, hinged, slab

L_SIDE, R_SIDE = "left side panel", "right side panel"
SIDES = (L_SIDE, R_SIDE)
_SIDE_WORDS = {
    "left side panel": (L_SIDE,), "left side": (L_SIDE,), "right side panel": (R_SIDE,),
    "right side": (R_SIDE,), "side panels": SIDES, "sides": SIDES,
}
_CARCASS_WORDS = {
    **_SIDE_WORDS, "bottom panel": ("bottom panel",), "base panel": ("bottom panel",),
    "top panel": ("top panel",), "top board": ("top panel",), "back panel": ("back panel",),
    "back board": ("back panel",),
}
_DOOR_WORDS = {"door": ("door",), "left door": ("left door",), "right door": ("right door",),
               "doors": ("door", "left door", "right door")}
SHELF_NAMES = ("first shelf", "second shelf", "third shelf")
DRAWER_NAMES = ("top drawer", "middle drawer", "bottom drawer")
DOOR_ANGLE = math.radians(95.0)  # doors are drawn open so the inside stays visible

VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "bookcase": {**_CARCASS_WORDS, "shelf": ("shelf",), **{n: (n,) for n in SHELF_NAMES},
                 "shelves": ("shelf", *SHELF_NAMES)},
    "table": {"legs": ("legs",), "long rails": ("long rails",), "short rails": ("short rails",),
              "rails": ("long rails", "short rails"), "lower shelf": ("lower shelf",),
              "tabletop": ("tabletop",), "table top": ("tabletop",)},
    "chair": {"front legs": ("front legs",), "back legs": ("back legs",), "legs": ("front legs", "back legs"),
              "seat": ("seat",), "backrest": ("backrest",), "back rest": ("backrest",),
              "stretchers": ("stretchers",), "stretcher bars": ("stretchers",)},
    "stool": {"legs": ("legs",), "rungs": ("rungs",), "footrest rungs": ("rungs",), "seat": ("seat",),
              "cushion": ("cushion",), "seat pad": ("cushion",)},
    "bed frame": {"headboard": ("headboard",), "footboard": ("footboard",),
                  "left side rail": ("left side rail",), "right side rail": ("right side rail",),
                  "side rails": ("left side rail", "right side rail"), "centre beam": ("centre beam",),
                  "center beam": ("centre beam",), "slats": ("slats",)},
    "cabinet": {**_CARCASS_WORDS, **_DOOR_WORDS, "shelf": ("shelf",)},
    "desk": {**_SIDE_WORDS, "desktop": ("desktop",), "desk top": ("desktop",),
             "modesty panel": ("modesty panel",), "drawer unit": ("drawer unit",),
             "drawer fronts": ("drawers",), "drawers": ("drawers",)},
    "wardrobe": {**_CARCASS_WORDS, **_DOOR_WORDS, "hat shelf": ("hat shelf",), "shelf": ("hat shelf",),
                 "hanging rail": ("hanging rail",), "clothes rail": ("hanging rail",)},
    "nightstand": {**_CARCASS_WORDS, "drawer": ("drawer",), **{n: (n,) for n in DRAWER_NAMES},
                   "drawers": ("drawer", *DRAWER_NAMES)},
}
GROUP_PHRASES = {"sides": "side panels", "shelves": "shelves", "rails": "rails", "legs": "legs",
                 "side rails": "side rails", "doors": "doors", "drawers": "drawers"}


def _carcass(w: float, h: float, d: float, t: float, kick: float, top_over: bool) -> dict[str, Part]:
    """Bottom, sides, top and back of a box carcass (bookcase, cabinet, wardrobe, nightstand)."""
    side_h = h - t if top_over else h
    top_x = w / 2 if top_over else w / 2 - t
    return {
        "bottom panel": Part("bottom panel", (slab(-w / 2 + t, w / 2 - t, kick, kick + t, -d / 2, d / 2),),
                             "place", hardware="none"),
        L_SIDE: Part(L_SIDE, (slab(-w / 2, -w / 2 + t, 0, side_h, -d / 2, d / 2),), "attach",
                     ("bottom panel",), (("bottom panel", ("bottom panel",)),), "cam", "sides"),
        R_SIDE: Part(R_SIDE, (slab(w / 2 - t, w / 2, 0, side_h, -d / 2, d / 2),), "attach",
                     ("bottom panel",), (("bottom panel", ("bottom panel",)),), "cam", "sides"),
        "top panel": Part("top panel", (slab(-top_x, top_x, h - t, h, -d / 2, d / 2),), "lay",
                          SIDES, (("side panels", SIDES),), "cam"),
        "back panel": Part("back panel", (slab(-w / 2, w / 2, 0, h, -d / 2 - 0.014, -d / 2),), "nail",
                           ("bottom panel", *SIDES, "top panel"),
                           (("frame", ("bottom panel", *SIDES, "top panel")), ("carcass", SIDES)), "nails"),
    }


def _doors(names: tuple[str, ...], w: float, y0: float, y1: float, front: float) -> list[Part]:
    """Doors hung on the side panels, drawn open by DOOR_ANGLE, each with a metal handle."""
    door_w, door_h, yc = w / len(names) - 0.006, y1 - y0, (y0 + y1) / 2
    parts = []
    for name in names:
        right = name == "right door"
        sign = -1.0 if right else 1.0  # the panel extends from its hinge towards the middle
        panel = Box((sign * door_w / 2, yc, 0.011), (door_w, door_h, 0.022))
        handle = Box((sign * (door_w - 0.05), yc, 0.036), (0.022, min(0.16, door_h / 3), 0.026), finish="metal")
        boxes = hinged((-sign * w / 2, 0.0, front), sign * -DOOR_ANGLE, [panel, handle])
        side = R_SIDE if right else L_SIDE
        parts.append(Part(name, tuple(boxes), "hang", ("bottom panel", *SIDES, "top panel"),
                          ((side, (side,)), ("frame", ("bottom panel", *SIDES, "top panel"))), "hinges", "doors"))
    return parts


def _between_sides(name: str, w: float, t: float, y: float, z: tuple[float, float], thick: float = 0.03,
                   action: str = "insert", hardware: str = "pins", finish: str = "material") -> Part:
    """A board or rail spanning the inside width of a carcass, fixed to both side panels."""
    box = slab(-w / 2 + t, w / 2 - t, y, y + thick, z[0], z[1], finish)
    group = "shelves" if action == "insert" else None
    return Part(name, (box,), action, SIDES, (("side panels", SIDES), ("sides", SIDES)), hardware, group)


def bookcase(size: str, rng: np.random.Generator) -> Furniture:
    w, h = {"small": (0.62, 1.0), "medium": (0.8, 1.35), "large": (1.0, 1.75)}[size]
    d, t, kick = 0.32, 0.04, 0.06
    n = int(rng.integers(1, 4))
    parts = _carcass(w, h, d, t, kick, top_over=False)
    names = ("shelf",) if n == 1 else SHELF_NAMES[:n]
    gap = (h - 2 * t - kick) / (n + 1)
    shelves = [_between_sides(nm, w, t, kick + t + gap * (i + 1) - t / 2, (-d / 2 + 0.01, d / 2 - 0.02), t)
               for i, nm in enumerate(names)]
    order = ["bottom panel", L_SIDE, R_SIDE, "top panel"]
    return Furniture("bookcase", {"shelves": n}, (*[parts[k] for k in order], *shelves, parts["back panel"]))


def table(size: str, rng: np.random.Generator) -> Furniture:
    w, d = {"small": (0.8, 0.6), "medium": (1.2, 0.8), "large": (1.6, 0.9)}[size]
    h, top_t, leg, rail_h, rail_t = 0.75, 0.045, 0.065, 0.12, 0.028
    n_legs = 6 if size == "large" and rng.random() < 0.5 else 4
    has_shelf = bool(rng.random() < 0.5)
    lx, lz = w / 2 - 0.025 - leg / 2, d / 2 - 0.025 - leg / 2
    xs = (-lx, 0.0, lx) if n_legs == 6 else (-lx, lx)
    legs = tuple(slab(x - leg / 2, x + leg / 2, 0, h - top_t, z - leg / 2, z + leg / 2) for x in xs for z in (-lz, lz))
    y0, y1 = h - top_t - rail_h, h - top_t
    long_rails = tuple(slab(-lx, lx, y0, y1, z - rail_t / 2, z + rail_t / 2) for z in (-lz, lz))
    short_rails = tuple(slab(x - rail_t / 2, x + rail_t / 2, y0, y1, -lz, lz) for x in (-lx, lx))
    on_legs = (("legs", ("legs",)),)
    parts = [Part("legs", legs, "place", plural=True),
             Part("long rails", long_rails, "attach", ("legs",), on_legs, "screws", "rails", True),
             Part("short rails", short_rails, "attach", ("legs",), on_legs, "screws", "rails", True)]
    if has_shelf:
        shelf = slab(-lx, lx, 0.16, 0.19, -lz, lz)
        parts.append(Part("lower shelf", (shelf,), "insert", ("legs",), on_legs, "screws"))
    rails = ("long rails", "short rails")
    parts.append(Part("tabletop", (slab(-w / 2, w / 2, h - top_t, h, -d / 2, d / 2),), "lay", rails,
                      (("rails", rails), ("frame", rails)), "screws"))
    return Furniture("table", {"legs": n_legs, "lower_shelf": has_shelf}, tuple(parts))


def chair(size: str, rng: np.random.Generator) -> Furniture:
    w = {"small": 0.42, "medium": 0.46, "large": 0.5}[size]
    back_h = {"small": 0.86, "medium": 0.9, "large": 0.96}[size]
    sh, seat_t, leg = 0.46, 0.045, 0.05
    n_slats = int(rng.integers(1, 4))
    x, zf, zb = w / 2 - leg / 2 - 0.01, w / 2 - leg / 2 - 0.01, -w / 2 + leg / 2 + 0.01

    def post(px: float, pz: float, top: float) -> Box:
        return slab(px - leg / 2, px + leg / 2, 0, top, pz - leg / 2, pz + leg / 2)

    front = tuple(post(px, zf, sh - seat_t) for px in (-x, x))
    back = tuple(post(px, zb, back_h) for px in (-x, x))
    slat_h = 0.07
    ys = np.linspace(sh + 0.14, back_h - 0.03 - slat_h, n_slats) if n_slats > 1 else [back_h - 0.04 - slat_h]
    slats = tuple(slab(-x + leg / 2, x - leg / 2, y, y + slat_h, zb - 0.012, zb + 0.012) for y in ys)
    sy, st = 0.13, 0.028
    stretchers = (slab(-x - st / 2, -x + st / 2, sy, sy + st, zb, zf), slab(x - st / 2, x + st / 2, sy, sy + st, zb, zf),
                  slab(-x, x, sy + 0.06, sy + 0.06 + st, zf - st / 2, zf + st / 2))
    legs = ("front legs", "back legs")
    on_legs = (("legs", legs),)
    parts = (Part("front legs", front, "place", group="legs", plural=True),
             Part("back legs", back, "place", group="legs", plural=True),
             Part("seat", (slab(-w / 2, w / 2, sh - seat_t, sh, -w / 2, w / 2),), "lay", legs, on_legs, "screws"),
             Part("backrest", slats, "attach", ("back legs",), (("back legs", ("back legs",)),), "dowels"),
             Part("stretchers", stretchers, "attach", legs, on_legs, "dowels", plural=True))
    return Furniture("chair", {"backrest_slats": n_slats}, parts)


def stool(size: str, rng: np.random.Generator) -> Furniture:
    h = {"small": 0.45, "medium": 0.65, "large": 0.76}[size]
    s, seat_t, leg = 0.38, 0.045, 0.05
    n_legs = int(rng.choice([3, 4]))
    has_cushion = bool(rng.random() < 0.5)
    if n_legs == 4:
        r = s / 2 - leg / 2 - 0.02
        pos = [(-r, -r), (r, -r), (r, r), (-r, r)]
    else:
        r = s / 2 - leg / 2 - 0.01
        pos = [(r * math.cos(a), r * math.sin(a)) for a in np.radians([90.0, 210.0, 330.0])]
    legs = tuple(slab(px - leg / 2, px + leg / 2, 0, h - seat_t, pz - leg / 2, pz + leg / 2) for px, pz in pos)
    ry, rt, rungs = 0.32 * h, 0.03, []
    for (ax, az), (bx, bz) in zip(pos, pos[1:] + pos[:1]):
        length = math.hypot(bx - ax, bz - az) - leg
        rungs.append(Box(((ax + bx) / 2, ry, (az + bz) / 2), (length, rt, rt), math.atan2(-(bz - az), bx - ax)))
    on_legs = (("legs", ("legs",)),)
    parts = [Part("legs", legs, "place", plural=True),
             Part("rungs", tuple(rungs), "attach", ("legs",), on_legs, "dowels", plural=True),
             Part("seat", (slab(-s / 2, s / 2, h - seat_t, h, -s / 2, s / 2),), "lay", ("legs",), on_legs, "screws")]
    if has_cushion:
        pad = slab(-s / 2 + 0.025, s / 2 - 0.025, h, h + 0.05, -s / 2 + 0.025, s / 2 - 0.025, "fabric")
        parts.append(Part("cushion", (pad,), "lay", ("seat",), (("seat", ("seat",)),), "strips"))
    return Furniture("stool", {"legs": n_legs, "cushion": has_cushion}, tuple(parts))


def bed_frame(size: str, rng: np.random.Generator) -> Furniture:
    w, length = {"small": (0.9, 2.0), "medium": (1.4, 2.0), "large": (1.8, 2.1)}[size]
    post, rt, ry0, ry1 = 0.08, 0.045, 0.18, 0.34
    n_slats = int(rng.integers(6, 10))
    xp, zh, zf = w / 2 + post / 2, -length / 2 - post / 2, length / 2 + post / 2

    def board(z: float, post_h: float, y0: float, y1: float) -> tuple[Box, ...]:
        posts = tuple(slab(x - post / 2, x + post / 2, 0, post_h, z - post / 2, z + post / 2) for x in (-xp, xp))
        return (*posts, slab(-w / 2, w / 2, y0, y1, z - 0.018, z + 0.018))

    rails = ("left side rail", "right side rail")
    on_head = (("headboard", ("headboard",)),)
    parts = [Part("headboard", board(zh, 1.0, 0.3, 0.92), "place"),
             Part("left side rail", (slab(-w / 2, -w / 2 + rt, ry0, ry1, -length / 2, length / 2),), "attach",
                  ("headboard",), on_head, "brackets", "side rails"),
             Part("right side rail", (slab(w / 2 - rt, w / 2, ry0, ry1, -length / 2, length / 2),), "attach",
                  ("headboard",), on_head, "brackets", "side rails"),
             Part("footboard", board(zf, 0.5, 0.16, 0.44), "attach", rails, (("side rails", rails),), "brackets")]
    slat_needs: tuple[str, ...] = rails
    if size != "small":
        beam = (slab(-0.03, 0.03, 0.2, 0.27, -length / 2, length / 2),
                *(slab(-0.025, 0.025, 0, 0.2, z - 0.025, z + 0.025) for z in (-length / 4, length / 4)))
        ends = ("headboard", "footboard")
        parts.append(Part("centre beam", beam, "attach", ends, (("headboard and the footboard", ends),), "screws"))
        slat_needs = (*rails, "centre beam")
    zs = np.linspace(-length / 2 + 0.1, length / 2 - 0.1, n_slats)
    slats = tuple(slab(-w / 2 + rt, w / 2 - rt, 0.27, 0.295, z - 0.045, z + 0.045) for z in zs)
    parts.append(Part("slats", slats, "lay", slat_needs, (("side rails", rails),), "none", plural=True))
    return Furniture("bed frame", {"slats": n_slats}, tuple(parts), pitch_offset=14.0)


def cabinet(size: str, rng: np.random.Generator) -> Furniture:
    w, h = {"small": (0.6, 0.72), "medium": (0.8, 0.85), "large": (1.2, 0.9)}[size]
    d, t, kick = 0.45, 0.035, 0.06
    n_doors = 2 if size == "large" else int(rng.integers(1, 3))
    parts = _carcass(w, h, d, t, kick, top_over=True)
    shelf = _between_sides("shelf", w, t, (kick + h) / 2, (-d / 2 + 0.01, d / 2 - 0.03))
    names = ("door",) if n_doors == 1 else ("left door", "right door")
    doors = _doors(names, w, 0.012, h - t - 0.006, d / 2)
    order = ["bottom panel", L_SIDE, R_SIDE, "top panel", "back panel"]
    return Furniture("cabinet", {"doors": n_doors}, (*[parts[k] for k in order], shelf, *doors))


def desk(size: str, rng: np.random.Generator) -> Furniture:
    w = {"small": 1.0, "medium": 1.2, "large": 1.5}[size]
    d, h, t = 0.6, 0.75, 0.035
    n_drawers = int(rng.integers(0, 4))
    sides = [Part(L_SIDE, (slab(-w / 2, -w / 2 + t, 0, h - t, -d / 2, d / 2),), "place", group="sides"),
             Part(R_SIDE, (slab(w / 2 - t, w / 2, 0, h - t, -d / 2, d / 2),), "place", group="sides")]
    on_sides = (("side panels", SIDES),)
    modesty = slab(-w / 2 + t, w / 2 - t, 0.12, h - t, -d / 2 + 0.04, -d / 2 + 0.06)
    parts = [*sides,
             Part("desktop", (slab(-w / 2, w / 2, h - t, h, -d / 2, d / 2),), "lay", SIDES, on_sides, "cam"),
             Part("modesty panel", (modesty,), "attach", SIDES, on_sides, "cam")]
    if n_drawers:
        x1 = w / 2 - t
        x0, y1, dh = x1 - 0.42, h - t, 0.13
        y0 = y1 - dh * n_drawers - 0.05
        unit = slab(x0, x1, y0, y1, -d / 2 + 0.07, d / 2 - 0.03)
        fronts = []
        for i in range(n_drawers):
            top = y1 - 0.008 - i * dh
            fronts.append(slab(x0 + 0.03, x1 - 0.03, top - dh + 0.012, top, d / 2 - 0.03, d / 2 - 0.008))
            fronts.append(slab(-0.07 + (x0 + x1) / 2, 0.07 + (x0 + x1) / 2, top - dh / 2 - 0.01, top - dh / 2 + 0.01,
                               d / 2 - 0.008, d / 2 + 0.012, "metal"))
        parts.append(Part("drawer unit", (unit,), "attach", ("desktop",), (("desktop", ("desktop",)),), "screws"))
        parts.append(Part("drawers", tuple(fronts), "fit", ("drawer unit",), (("drawer unit", ("drawer unit",)),),
                          "runners", plural=True))
    return Furniture("desk", {"drawers": n_drawers}, tuple(parts))


def wardrobe(size: str, rng: np.random.Generator) -> Furniture:
    w, h = {"small": (0.8, 1.8), "medium": (1.0, 1.95), "large": (1.4, 2.1)}[size]
    d, t, kick = 0.55, 0.04, 0.08
    parts = _carcass(w, h, d, t, kick, top_over=True)
    shelf = _between_sides("hat shelf", w, t, h - t - 0.36, (-d / 2 + 0.01, 0.0))  # shallow: the rail shows
    rail = _between_sides("hanging rail", w, t, h - t - 0.5, (0.03, 0.07), 0.04, "attach", "brackets", "metal")
    doors = _doors(("left door", "right door"), w, 0.012, h - t - 0.006, d / 2)
    order = ["bottom panel", L_SIDE, R_SIDE, "top panel", "back panel"]
    return Furniture("wardrobe", {"doors": 2}, (*[parts[k] for k in order], shelf, rail, *doors))


def nightstand(size: str, rng: np.random.Generator) -> Furniture:
    w, h = {"small": (0.42, 0.5), "medium": (0.46, 0.56), "large": (0.52, 0.62)}[size]
    d, t, kick, dh = 0.4, 0.03, 0.05, 0.13
    n = int(rng.integers(1, 3))
    parts = _carcass(w, h, d, t, kick, top_over=True)
    names = ("drawer",) if n == 1 else ("top drawer", "bottom drawer")
    drawers = []
    for i, name in enumerate(names):
        y1 = h - t - 0.006 - i * dh
        y0 = y1 - dh + 0.01
        x0, x1 = -w / 2 + t + 0.004, w / 2 - t - 0.004
        body = slab(x0 + 0.01, x1 - 0.01, y0 + 0.015, y1 - 0.03, -d / 2 + 0.03, d / 2 - 0.02)
        front = slab(x0, x1, y0, y1, d / 2 - 0.02, d / 2)
        handle = slab(-0.05, 0.05, (y0 + y1) / 2 - 0.01, (y0 + y1) / 2 + 0.01, d / 2, d / 2 + 0.018, "metal")
        drawers.append(Part(name, (body, front, handle), "fit", ("bottom panel", *SIDES),
                            (("side panels", SIDES), ("carcass", SIDES)), "runners", "drawers"))
    order = ["bottom panel", L_SIDE, R_SIDE, "top panel", "back panel"]
    return Furniture("nightstand", {"drawers": n}, (*[parts[k] for k in order], *drawers))


BUILDERS = {"bookcase": bookcase, "table": table, "chair": chair, "stool": stool, "bed frame": bed_frame,
            "cabinet": cabinet, "desk": desk, "wardrobe": wardrobe, "nightstand": nightstand}
FURNITURE_KINDS: tuple[str, ...] = tuple(BUILDERS)
