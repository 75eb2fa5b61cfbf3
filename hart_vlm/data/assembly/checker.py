"""Scoring generated assembly guides against the ground truth.

Given a guide (its furniture, material and view) and generated (text, image) steps, the
checker reads each text into the parts it adds (parsing.py), checks the order against the
precedence constraints, renders the state each prefix of texts implies, and compares every
generated image with its implied render:

- PSNR (capped at `psnr_cap` dB for identical images, so means stay finite) and SSIM
  (Wang et al. 2004, 11x11 Gaussian window) on RGB in [0, 1], via torchmetrics;
- per-part mask IoU by colour segmentation, on the pixels where the implied render shows one
  flat face (no edge line, no antialiasing blend). A generated pixel counts as furniture when
  its colour (Euclidean RGB) is closer to a colour of some present part than to the background
  and floor-shadow colours; a furniture pixel is given the part whose face colour is nearest
  among the faces the implied render shows within `search_radius` of it (or, in empty space,
  among all present parts: an extra part drawn there counts against the part it looks like).
  IoU_p = |pred = p and true = p| / |pred = p or true = p| over those pixels, for each present
  part with a non-empty union; the step's IoU is their mean. It measures whether each part is
  drawn where the texts put it: a missing part reads as background, a part drawn elsewhere as
  background or as a neighbour. Flat parts of one material differ only by shading and a small
  per-part tint, so the part choice is local; thin parts (rails, slats) have few pure pixels.
- the material the picture is drawn in. Part IoU sees a wrong colour only where it is nearer the
  background than the parts (a black cabinet rendered in walnut scores 0.93, in white 0.37), so
  each picture's material is read on its own: the implied render is recoloured in each of the eight
  materials (same faces, shading and tints; metal and fabric boxes left out), and every pure pixel
  of a material face that the picture draws as furniture (nearer some material's colour for that
  face than the background and shadow) votes for the material whose colour there is nearest.
  The most voted material is the step's `material` (None with fewer than `min_material_pixels`
  votes, e.g. a picture of empty floor); `material_accuracy` is the share of judged steps drawn
  in the requested material.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from .furniture import MATERIALS
from .guide import AssemblyGuide, GuidePlan, box_colors, make_renderer
from .parsing import parse_step
from .render import Frame


@dataclass
class StepScore:
    text: str
    parts_added: list[str]  # new parts this text adds (empty: the step is invalid)
    repeated: list[str]  # parts named as added that were already in place
    unknown: list[str]  # part phrases of the kind that this guide's furniture does not have
    requirements_met: bool  # every added part's prerequisites were in place (or added with it)
    psnr: float | None = None
    ssim: float | None = None
    iou: float | None = None
    part_iou: dict[str, float] = field(default_factory=dict)
    material: str | None = None  # the material the picture is drawn in (None: no picture, or too little furniture)

    @property
    def valid(self) -> bool:
        return bool(self.parts_added)


@dataclass
class AssemblyScore:
    steps: list[StepScore]
    order_valid: bool  # every step adds a part, and only after the parts it requires
    complete: bool  # all parts of the furniture are in place at the end
    missing_parts: list[str]
    step_count_match: bool  # as many steps as the ground truth
    implied_images: list[Image.Image]  # render of the state each prefix of texts implies
    requested_material: str | None = None  # the guide's material, which every picture should show

    @staticmethod
    def _mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    @property
    def mean_psnr(self) -> float | None:
        return self._mean([s.psnr for s in self.steps])

    @property
    def mean_ssim(self) -> float | None:
        return self._mean([s.ssim for s in self.steps])

    @property
    def mean_iou(self) -> float | None:
        return self._mean([s.iou for s in self.steps])

    @property
    def material_accuracy(self) -> float | None:
        """Share of the steps whose picture's material could be read that show the requested one."""
        judged = [s.material for s in self.steps if s.material is not None]
        return float(np.mean([m == self.requested_material for m in judged])) if judged else None

    def to_dict(self) -> dict:
        """JSON-ready summary (without the implied images)."""
        return {"order_valid": self.order_valid, "complete": self.complete, "missing_parts": self.missing_parts,
                "step_count_match": self.step_count_match, "mean_psnr": self.mean_psnr,
                "mean_ssim": self.mean_ssim, "mean_iou": self.mean_iou,
                "requested_material": self.requested_material, "material_accuracy": self.material_accuracy,
                "steps": [{**asdict(s), "valid": s.valid} for s in self.steps]}


def segment_by_color(image_HW3: np.ndarray, frame: Frame, radius: int) -> np.ndarray:
    """Part index (-1: background or shadow) of each pure pixel of `frame`, read from the colours
    of `image`. # (P,) in the order of np.nonzero(frame.pure)

    1. Furniture or not: is the pixel closer to some colour of a present part than to the
       background and shadow colours?
    2. Which part: the nearest colour among the faces that the implied render shows within
       `radius` pixels; where it shows none (empty space), the nearest colour of any present part.
    """
    ys, xs = np.nonzero(frame.pure)
    pixels = image_HW3[ys, xs].astype(np.int32)[:, None]  # (P, 1, 3)
    palette = frame.palette.astype(np.int32)
    on_present = (frame.palette_parts >= 0) & frame.present[np.maximum(frame.palette_parts, 0)]
    part_labels = np.flatnonzero(on_present)
    if part_labels.size == 0:  # nothing is in place yet: every pixel is background
        return np.full(len(ys), -1)
    d_background = ((pixels - palette[None, :2]) ** 2).sum(-1).min(1)  # (P,)
    d_parts = ((pixels - palette[None, part_labels]) ** 2).sum(-1)  # (P, M)
    furniture = d_parts.min(1) < d_background
    nearest_any = frame.palette_parts[part_labels[d_parts.argmin(1)]]
    best = np.full(len(ys), np.iinfo(np.int32).max)
    local = np.full(len(ys), -1, dtype=np.int16)
    h, w = frame.labels.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            label = frame.labels[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
            distance = ((pixels[:, 0] - palette[label]) ** 2).sum(-1)
            better = (frame.palette_parts[label] >= 0) & (distance < best)
            best = np.where(better, distance, best)
            local = np.where(better, frame.palette_parts[label], local)
    return np.where(furniture, np.where(local >= 0, local, nearest_any), -1)


def part_ious(image_HW3: np.ndarray, frame: Frame, part_names: tuple[str, ...], radius: int) -> dict[str, float]:
    """IoU per present part between the colour segmentation of `image` and the frame's part map,
    over the frame's pure pixels."""
    predicted = segment_by_color(image_HW3, frame, radius)
    truth = frame.part_map[frame.pure]
    scores = {}
    for p in np.flatnonzero(frame.present):
        union = np.count_nonzero((predicted == p) | (truth == p))
        if union:
            scores[part_names[p]] = np.count_nonzero((predicted == p) & (truth == p)) / union
    return scores


def drawn_material(image_HW3: np.ndarray, frame: Frame, material_colors: np.ndarray, material_faces: np.ndarray,
                   min_pixels: int) -> str | None:
    """The material whose colours the picture's furniture matches best, by a vote of the pure
    pixels of the frame's material faces; None with fewer than `min_pixels` votes.

    material_colors: (M, N, 3) colour of every label of the frame's scene in each of the M
    materials of MATERIALS (SceneRenderer.face_colors); material_faces: (N,) bool, the labels
    of faces of boxes made of the material (not metal or fabric)."""
    labels = frame.labels[frame.pure]
    on_material = material_faces[labels]
    labels = labels[on_material]
    if labels.size < min_pixels:
        return None
    pixels = image_HW3[frame.pure][on_material].astype(np.float64)  # (P, 3)
    d_materials = ((pixels[None] - material_colors[:, labels]) ** 2).sum(-1)  # (M, P)
    d_background = ((pixels[:, None] - frame.palette[None, :2].astype(np.float64)) ** 2).sum(-1).min(1)  # (P,)
    votes = d_materials.argmin(0)[d_materials.min(0) < d_background]
    if votes.size < min_pixels:
        return None
    return list(MATERIALS)[int(np.bincount(votes, minlength=len(MATERIALS)).argmax())]


class AssemblyChecker:
    """Scores generated guides; see the module docstring for what each number measures."""

    def __init__(self, psnr_cap: float = 100.0, search_radius: float = 1 / 48, min_material_pixels: int = 20) -> None:
        if not psnr_cap > 0:
            raise ValueError(f"psnr_cap must be positive, got {psnr_cap}")
        if not 0 <= search_radius <= 0.25:
            raise ValueError(f"search_radius must be in [0, 0.25] (fraction of the image side), got {search_radius}")
        if not (isinstance(min_material_pixels, int) and min_material_pixels >= 1):
            raise ValueError(f"min_material_pixels must be an int >= 1, got {min_material_pixels!r}")
        self.psnr_cap = psnr_cap
        self.search_radius = search_radius  # how far a part may be from where the texts put it
        self.min_material_pixels = min_material_pixels  # fewest furniture pixels that tell a picture's material

    def score(self, guide: AssemblyGuide | GuidePlan,
              generated_steps: list[tuple[str, Image.Image | None]], resolution: int | None = None) -> AssemblyScore:
        """Score `generated_steps` against `guide`; images are compared at `resolution`
        (default: the guide's), generated images being resized to it."""
        plan = guide.plan if isinstance(guide, AssemblyGuide) else guide
        if not isinstance(plan, GuidePlan):
            raise TypeError(f"guide must be an AssemblyGuide or GuidePlan, got {type(guide).__name__}")
        resolution = resolution or getattr(guide, "resolution", 128)
        steps = list(generated_steps)
        for k, item in enumerate(steps):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                    and (item[1] is None or isinstance(item[1], Image.Image))):
                raise TypeError(f"generated_steps[{k}] must be a (str, PIL.Image | None) pair, got {item!r:.80}")
        furniture = plan.furniture
        names = furniture.part_names
        present: set[str] = set()
        scores, additions = [], []
        for text, _ in steps:
            parsed = parse_step(furniture.kind, text, names, present)
            after = present | set(parsed.added)
            met = all(set(furniture.part(n).requires) <= after for n in parsed.added)
            scores.append(StepScore(text, parsed.added, parsed.repeated, parsed.unknown, met))
            additions.append([names.index(n) for n in parsed.added])
            present = after
        renderer = make_renderer(furniture, plan.material, plan.view, resolution)
        frames = renderer.render_states(additions) if steps else []
        # every face's colour in each material, and which faces are of the material (not metal or fabric)
        material_colors = np.stack([renderer.face_colors(box_colors(furniture, m)) for m in MATERIALS])
        finishes = [box.finish == "material" for part in furniture.parts for box in part.boxes]
        material_faces = np.array([False, False] + list(np.repeat(finishes, 6)))
        for score, (_, image), frame in zip(scores, steps, frames):
            if image is not None:
                self._score_image(score, image, frame, names, material_colors, material_faces)
        missing = [n for n in names if n not in present]
        return AssemblyScore(
            steps=scores, order_valid=bool(scores) and all(s.valid and s.requirements_met for s in scores),
            complete=not missing, missing_parts=missing, step_count_match=len(steps) == len(plan.step_parts),
            implied_images=[f.image for f in frames], requested_material=plan.material)

    def _score_image(self, score: StepScore, image: Image.Image, frame: Frame, names: tuple[str, ...],
                     material_colors: np.ndarray, material_faces: np.ndarray) -> None:
        # torchmetrics pulls in torch; imported here so that generating data never needs it.
        import torch
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        size = frame.image.size
        rgb = image.convert("RGB")
        generated = np.array(rgb.resize(size, Image.BICUBIC) if rgb.size != size else rgb)  # (H, W, 3) uint8
        pred = torch.from_numpy(generated).permute(2, 0, 1)[None].double() / 255  # (1, 3, H, W)
        target = torch.from_numpy(np.array(frame.image)).permute(2, 0, 1)[None].double() / 255
        score.psnr = min(float(peak_signal_noise_ratio(pred, target, data_range=1.0)), self.psnr_cap)
        score.ssim = float(structural_similarity_index_measure(pred, target, data_range=1.0))
        radius = max(1, round(size[0] * self.search_radius))
        score.part_iou = part_ious(generated, frame, names, radius)
        score.iou = float(np.mean(list(score.part_iou.values()))) if score.part_iou else None
        score.material = drawn_material(generated, frame, material_colors, material_faces, self.min_material_pixels)
