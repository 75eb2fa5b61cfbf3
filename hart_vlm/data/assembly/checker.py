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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from .guide import AssemblyGuide, GuidePlan, make_renderer
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

    def to_dict(self) -> dict:
        """JSON-ready summary (without the implied images)."""
        return {"order_valid": self.order_valid, "complete": self.complete, "missing_parts": self.missing_parts,
                "step_count_match": self.step_count_match, "mean_psnr": self.mean_psnr,
                "mean_ssim": self.mean_ssim, "mean_iou": self.mean_iou,
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


class AssemblyChecker:
    """Scores generated guides; see the module docstring for what each number measures."""

    def __init__(self, psnr_cap: float = 100.0, search_radius: float = 1 / 48) -> None:
        if not psnr_cap > 0:
            raise ValueError(f"psnr_cap must be positive, got {psnr_cap}")
        if not 0 <= search_radius <= 0.25:
            raise ValueError(f"search_radius must be in [0, 0.25] (fraction of the image side), got {search_radius}")
        self.psnr_cap = psnr_cap
        self.search_radius = search_radius  # how far a part may be from where the texts put it

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
        frames = make_renderer(furniture, plan.material, plan.view, resolution).render_states(additions) if steps else []
        for score, (_, image), frame in zip(scores, steps, frames):
            if image is not None:
                self._score_image(score, image, frame, names)
        missing = [n for n in names if n not in present]
        return AssemblyScore(
            steps=scores, order_valid=bool(scores) and all(s.valid and s.requirements_met for s in scores),
            complete=not missing, missing_parts=missing, step_count_match=len(steps) == len(plan.step_parts),
            implied_images=[f.image for f in frames])

    def _score_image(self, score: StepScore, image: Image.Image, frame: Frame, names: tuple[str, ...]) -> None:
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
