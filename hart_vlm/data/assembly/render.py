"""A small CPU renderer for scenes of boxes: flat shading, a floor shadow, dark edges, antialiasing.

Each sub-pixel of a `supersample`-times larger grid casts one perspective ray; rays are
intersected with every box by the slab method (Kay & Kajiya 1986), nearest hit wins (a
z-buffer), and the label of the hit face picks its colour. Face colour = material colour x
part tint x (ambient + diffuse * max(0, n . l)) (Lambert, one directional light). Edges are
sub-pixels whose neighbour shows another face; they are darkened. Averaging each
supersample x supersample block gives the antialiased image.

States are rendered incrementally: a guide only ever adds parts, so the z-buffer of step k is
the z-buffer of step k-1 updated with the new boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .furniture import Box, yaw_matrix

BACKGROUND, SHADOW = 0, 1  # labels 0 and 1; face f of box b has label 2 + 6 * b + f
TINTS = (1.0, 0.86, 0.95, 0.8, 0.9, 0.76, 0.98, 0.83, 0.92, 0.79)  # per part, so parts stay separable


@dataclass(frozen=True)
class RenderConfig:
    """Resolution and look of the renders."""

    resolution: int = 128
    supersample: int = 3  # sub-pixels per pixel side (antialiasing)
    margin: float = 0.06  # free border around the furniture, fraction of the image side
    background: tuple[int, int, int] = (184, 202, 232)
    shadow: tuple[int, int, int] = (150, 166, 198)
    light: tuple[float, float, float] = (-0.45, 1.0, 0.7)  # towards the light, world frame
    ambient: float = 0.5
    diffuse: float = 0.5
    edge_darken: float = 0.45  # edge colour = face colour x this
    edge_width: int = 1  # sub-pixels on each side of a face boundary

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or not 16 <= self.resolution <= 2048:
            raise ValueError(f"resolution must be an int in [16, 2048], got {self.resolution!r}")
        if not isinstance(self.supersample, int) or not 1 <= self.supersample <= 8:
            raise ValueError(f"supersample must be an int in [1, 8], got {self.supersample!r}")
        if not 0 <= self.margin < 0.4:
            raise ValueError(f"margin must be in [0, 0.4), got {self.margin}")
        if not 1 <= self.edge_width <= 8:
            raise ValueError(f"edge_width must be in [1, 8], got {self.edge_width}")


@dataclass(frozen=True)
class Camera:
    """A pinhole camera; `focal`, `cx`, `cy` are in output pixels."""

    eye: np.ndarray  # (3,)
    right: np.ndarray  # (3,)
    up: np.ndarray  # (3,)
    forward: np.ndarray  # (3,)
    focal: float
    cx: float
    cy: float

    def project(self, points_N3: np.ndarray) -> np.ndarray:
        """World points to pixel coordinates (u right, v down). # (N, 2)"""
        rel = points_N3 - self.eye
        depth = rel @ self.forward
        u = self.cx + self.focal * (rel @ self.right) / depth
        v = self.cy - self.focal * (rel @ self.up) / depth
        return np.stack([u, v], axis=1)


def fit_camera(boxes: list[Box], yaw_deg: float, pitch_deg: float, resolution: int, margin: float) -> Camera:
    """A camera looking at the boxes from (yaw, pitch), zoomed so that they fill the image."""
    corners = np.concatenate([b.corners() for b in boxes])  # (8B, 3)
    lo, hi = corners.min(0), corners.max(0)
    target = (lo + hi) / 2
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    direction = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    eye = target + direction * 3.0 * float(np.linalg.norm(hi - lo))
    forward = -direction
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    unit = Camera(eye, right, up, forward, 1.0, 0.0, 0.0).project(corners)  # (8B, 2), focal 1
    span = max(unit[:, 0].max() - unit[:, 0].min(), unit[:, 1].max() - unit[:, 1].min())
    focal = resolution * (1 - 2 * margin) / span
    centre = (unit.max(0) + unit.min(0)) / 2 * focal
    return Camera(eye, right, up, forward, focal, resolution / 2 - centre[0], resolution / 2 - centre[1])


@dataclass
class Frame:
    """One rendered state: the picture, what each pixel shows, and the scene's colour palette."""

    image: Image.Image
    labels: np.ndarray  # (H, W) int32: label seen at the pixel centre (0 background, 1 shadow, faces)
    pure: np.ndarray  # (H, W) bool: the pixel shows one flat face (no edge, no antialiasing blend)
    palette: np.ndarray  # (N, 3) uint8: flat colour of every label; a pure pixel has exactly its label's
    palette_parts: np.ndarray  # (N,) int16: part index of every label, -1 for background and shadow
    present: np.ndarray  # (P,) bool: which parts are in this state

    @property
    def part_map(self) -> np.ndarray:
        """Part index seen at each pixel centre, -1 for background and shadow. # (H, W)"""
        return self.palette_parts[self.labels]


class SceneRenderer:
    """Renders cumulative states of one scene (boxes grouped into parts) from one camera."""

    def __init__(self, boxes: list[Box], box_parts: list[int], base_colors: list[tuple[int, int, int]],
                 camera: Camera, config: RenderConfig) -> None:
        if not (len(boxes) == len(box_parts) == len(base_colors)) or not boxes:
            raise ValueError("boxes, box_parts and base_colors must be non-empty and of equal length")
        self.boxes, self.config, self.camera = boxes, config, camera
        self.box_parts = np.asarray(box_parts, dtype=np.int16)
        self.num_parts = int(self.box_parts.max()) + 1
        s, res = config.supersample, config.resolution
        # 1. One ray per sub-pixel centre, kept per world axis as 2-D arrays; its direction has
        #    unit component along `forward`, so the hit parameter t is the camera-space depth.
        grid = (np.arange(res * s, dtype=np.float64) + 0.5) / s
        du = (grid - camera.cx) / camera.focal  # (WS,)
        dv = (grid - camera.cy) / camera.focal  # (HS,)
        self.dirs = [(camera.forward[a] + du[None, :] * camera.right[a] - dv[:, None] * camera.up[a]).astype(np.float32)
                     for a in range(3)]  # 3 x (HS, WS)
        self.inv_dirs = [1.0 / np.where(np.abs(d) < 1e-9, np.float32(1e-9), d) for d in self.dirs]
        # 2. Where each ray meets the floor (y = 0), for the shadows; NaN where it does not.
        dy = self.dirs[1]
        t_floor = np.where(dy < -1e-9, -camera.eye[1] * self.inv_dirs[1], np.nan)
        self.floor = [(camera.eye[a] + t_floor * self.dirs[a]).astype(np.float32) for a in (0, 2)]  # 2 x (HS, WS)
        # 3. Colour of every label (background, shadow, then 6 faces per box), plain and as an
        #    edge; packed as r | g << 16 | b << 32 so that one lookup fetches all three channels
        #    and block sums of up to 256 sub-pixels never carry into the next channel.
        self.colors, self.label_parts = self._palette(base_colors)
        edge_colors = np.round(self.colors * config.edge_darken).astype(np.uint8)
        both = np.concatenate([self.colors, edge_colors]).astype(np.uint64)
        self.packed = both[:, 0] | (both[:, 1] << np.uint64(16)) | (both[:, 2] << np.uint64(32))

    def face_colors(self, base_colors: list[tuple[int, int, int]]) -> np.ndarray:
        """The flat colour (unrounded sRGB) of every label if box b had base colour `base_colors[b]`:
        the background and shadow colours, then material x part tint x Lambert shade for each face.
        The checker recolours a scene with it to tell which material a picture shows. # (N, 3)"""
        if len(base_colors) != len(self.boxes):
            raise ValueError(f"base_colors must have one colour per box ({len(self.boxes)}), got {len(base_colors)}")
        cfg = self.config
        light = np.asarray(cfg.light) / np.linalg.norm(cfg.light)
        colors = [np.asarray(cfg.background, float), np.asarray(cfg.shadow, float)]
        for box, part, base in zip(self.boxes, self.box_parts, base_colors):
            rot = yaw_matrix(box.yaw)
            for face in range(6):
                normal = np.zeros(3)
                normal[face // 2] = 1.0 if face % 2 else -1.0
                shade = cfg.ambient + cfg.diffuse * max(0.0, float(rot @ normal @ light))
                colors.append(np.asarray(base, float) * TINTS[part % len(TINTS)] * shade)
        return np.stack(colors)

    def _palette(self, base_colors: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        parts = [-1, -1] + [int(part) for part in np.repeat(self.box_parts, 6)]
        palette = np.clip(np.round(self.face_colors(base_colors)), 0, 255).astype(np.int64)
        # Distinct parts must never share a colour, or colour segmentation could not tell them apart.
        owner: dict[tuple[int, ...], int] = {}
        for i, part in enumerate(parts):
            key = tuple(palette[i])
            while key in owner and owner[key] != part:
                palette[i] = np.clip(palette[i] + (1 if palette[i].max() < 250 else -1), 0, 255)
                key = tuple(palette[i])
            owner.setdefault(key, part)
        return palette.astype(np.uint8), np.asarray(parts, dtype=np.int16)

    def _region(self, corners_N3: np.ndarray) -> tuple[slice, slice]:
        """The sub-pixel rectangle covering the projection of some points."""
        s, size = self.config.supersample, self.config.resolution * self.config.supersample
        uv = self.camera.project(corners_N3) * s
        u0, v0 = np.clip(np.floor(uv.min(0)).astype(int) - 1, 0, size)
        u1, v1 = np.clip(np.ceil(uv.max(0)).astype(int) + 1, 0, size)
        return slice(v0, v1), slice(u0, u1)

    def _cast(self, b: int, depth: np.ndarray, labels: np.ndarray, shadow: np.ndarray) -> None:
        """Draw box b into the z-buffer `depth`, the label buffer and the shadow mask (in place)."""
        box = self.boxes[b]
        cos, sin = math.cos(box.yaw), math.sin(box.yaw)
        half = np.asarray(box.size) / 2
        o = yaw_matrix(box.yaw).T @ (self.camera.eye - np.asarray(box.center))  # eye in the box frame
        win = self._region(box.corners())
        if box.yaw == 0.0:
            inv = [d[win] for d in self.inv_dirs]
        else:
            dx, dz = self.dirs[0][win], self.dirs[2][win]
            inv = [1.0 / np.where(np.abs(v) < 1e-9, np.float32(1e-9), v)
                   for v in (cos * dx - sin * dz, self.dirs[1][win], sin * dx + cos * dz)]
        # Slab method: the ray is inside the box for t in [max_a near_a, min_a far_a].
        near = far = axis = None
        for a in range(3):
            t1, t2 = (-half[a] - o[a]) * inv[a], (half[a] - o[a]) * inv[a]
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            if near is None:
                near, far, axis = lo, hi, np.zeros(lo.shape, dtype=np.int32)
            else:
                later = lo > near
                near, far, axis = np.where(later, lo, near), np.minimum(far, hi), np.where(later, a, axis)
        hit = (near <= far) & (near > 0) & (near < depth[win])
        # The ray enters through the face of `axis` on the eye's side: the + face if o > half.
        face_label = np.array([2 + 6 * b + 2 * a + int(o[a] > 0) for a in range(3)], dtype=np.int32)
        depth[win] = np.where(hit, near, depth[win])
        labels[win] = np.where(hit, face_label[axis], labels[win])
        # Shadow: the box's footprint, slightly enlarged, on the floor (light from above).
        foot = box.corners()
        foot[:, 1] = 0.0
        win = self._region(foot + np.sign(foot - np.asarray(box.center)) * [0.05, 0.0, 0.05])
        fx, fz = self.floor[0][win] - box.center[0], self.floor[1][win] - box.center[2]
        inside = (np.abs(cos * fx - sin * fz) <= half[0] + 0.03) & (np.abs(sin * fx + cos * fz) <= half[2] + 0.03)
        shadow[win] |= inside

    def render_states(self, additions: list[list[int]]) -> list[Frame]:
        """One frame per entry of `additions`: the parts added at that state (cumulative)."""
        size = self.config.resolution * self.config.supersample
        depth = np.full((size, size), np.inf, dtype=np.float32)
        labels = np.zeros((size, size), dtype=np.int32)
        shadow = np.zeros((size, size), dtype=bool)
        present = np.zeros(self.num_parts, dtype=bool)
        frames = []
        for added in additions:
            for part in added:
                if not 0 <= part < self.num_parts:
                    raise ValueError(f"part index must be in [0, {self.num_parts}), got {part}")
                present[part] = True
                for b in np.flatnonzero(self.box_parts == part):
                    self._cast(int(b), depth, labels, shadow)
            frames.append(self._compose(np.where((labels == BACKGROUND) & shadow, SHADOW, labels), present))
        return frames

    def _compose(self, labels: np.ndarray, present: np.ndarray) -> Frame:
        s, res, width = self.config.supersample, self.config.resolution, self.config.edge_width
        # Sub-pixels within `width` of a change of label are edges, drawn on the part side only.
        edge = np.zeros(labels.shape, dtype=bool)
        for shift in range(1, width + 1):
            rows = labels[shift:] != labels[:-shift]
            cols = labels[:, shift:] != labels[:, :-shift]
            edge[shift:] |= rows
            edge[:-shift] |= rows
            edge[:, shift:] |= cols
            edge[:, :-shift] |= cols
        edge &= labels >= 2
        n = len(self.colors)
        key = labels + n * edge  # index into [plain colours, edge colours]
        sub = np.take(self.packed, key)  # (HS, WS) packed colours
        # Average each s x s block (antialiasing); a block is pure if it is one label and no edge.
        total = np.zeros((res, res), dtype=np.uint64)
        pure = key[::s, ::s] < n
        for i in range(s):
            for j in range(s):
                total += sub[i::s, j::s]
                pure &= key[i::s, j::s] == key[::s, ::s]
        channels = [(total >> np.uint64(16 * c)) & np.uint64(0xFFFF) for c in range(3)]
        image = ((np.stack(channels, -1) + s * s // 2) // (s * s)).astype(np.uint8)  # (H, W, 3)
        centre = np.ascontiguousarray(labels[s // 2::s, s // 2::s])
        return Frame(Image.fromarray(image, "RGB"), centre, pure, self.colors, self.label_parts, present.copy())
