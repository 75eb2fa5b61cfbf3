"""Sampling settings and the token samplers of interleaved generation.

`SamplingConfig` plays the part of transformers' `GenerationConfig` for text *and* images: the
text settings follow its names (temperature, top_k, top_p, repetition_penalty, max_new_tokens);
the image settings follow HART (HART_REFERENCE §5): classifier-free guidance growing with the
scale index, a larger top-k on the early scales, and the residual head's step count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class SamplingConfig:
    # text
    max_new_tokens: int = 512
    temperature: float = 0.7  # 0 = greedy
    top_k: int = 50  # 0 = off
    top_p: float = 0.95
    repetition_penalty: float = 1.0  # CTRL (Keskar et al., 2019): > 1 discourages repeats
    # images (HART §3.3 / HART_REFERENCE §5)
    # Guidance at the last scale; scale k gets cfg * k / (K - 1). HART guides at 4.5; 3 measured better on
    # the tiny model (docs/experiments/image_guidance.md).
    cfg: float = 3.0
    image_temperature: float = 1.0
    image_top_k: tuple[int, int] = (600, 300)  # (first `image_top_k_switch` scales, the rest)
    image_top_k_switch: int = 7
    image_top_p: float = 1.0
    # 1: the head distilled to one step where the model has one (hart/one_step_head.py), unguided
    diffusion_steps: int = 8
    # Guidance inside the residual head; None: the same as `cfg` (HART guides the head as the scales).
    # 0 measured better on the tiny model (docs/experiments/head_guidance_zero.md).
    diffusion_cfg: float | None = 0.0
    diffusion_temperature: float = 1.0
    use_residual: bool = True  # False: discrete-only decoding (faster, blurrier)
    # control
    max_images: int | None = None
    # A regular expression; whenever the text since the last image matches it (re.search), the
    # next token is forced to be <|image_start|>. generate_story uses it to get one image per step.
    force_image_after: str | None = None
    # stream a coarse preview after every n-th scale (0: none; None: every 2nd when streaming)
    preview_every: int | None = None
    # with a step check (chat / generate_story `step_check=`): how many times a rejected line is
    # sampled again, and at which text temperature; when every try is rejected the first stands.
    # A rejected try costs only text tokens (docs/experiments/step_retries.md).
    step_retries: int = 20
    retry_temperature: float = 1.0

    def __post_init__(self) -> None:
        self._check_types()
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        for name in ("temperature", "image_temperature", "diffusion_temperature", "retry_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        for name in ("top_p", "image_top_p"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.cfg < 0 or (self.diffusion_cfg is not None and self.diffusion_cfg < 0):
            raise ValueError(f"cfg and diffusion_cfg must be >= 0, got {self.cfg} and {self.diffusion_cfg}")
        if not 1 <= self.diffusion_steps <= 1000:
            raise ValueError(f"diffusion_steps must be in [1, 1000], got {self.diffusion_steps}")
        if self.preview_every is not None and self.preview_every < 0:
            raise ValueError(f"preview_every must be >= 0 or None, got {self.preview_every}")
        if self.step_retries < 0:
            raise ValueError(f"step_retries must be >= 0, got {self.step_retries}")
        if self.retry_temperature == 0:
            raise ValueError("retry_temperature must be > 0: a greedy retry repeats the rejected line")
        if self.max_images is not None and self.max_images < 0:
            raise ValueError(f"max_images must be >= 0 or None, got {self.max_images}")
        if len(tuple(self.image_top_k)) != 2 or min(self.image_top_k) < 0:
            raise ValueError(f"image_top_k must be two non-negative ints (early, late), got {self.image_top_k}")
        self.image_top_k = tuple(int(k) for k in self.image_top_k)

    _INTS = ("max_new_tokens", "top_k", "image_top_k_switch", "diffusion_steps", "step_retries")
    _OPTIONAL_INTS = ("max_images", "preview_every")
    _FLOATS = ("temperature", "top_p", "repetition_penalty", "cfg", "image_temperature", "image_top_p",
               "diffusion_temperature", "retry_temperature")

    def _check_types(self) -> None:
        """Types and finiteness, before any range check: a string, NaN or infinity would pass a
        `< 0` test and fail deep in torch, or switch guidance off without a word."""
        import math
        import re

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name in self._INTS + self._OPTIONAL_INTS:
            value = getattr(self, name)
            if not (is_int(value) or (value is None and name in self._OPTIONAL_INTS)):
                raise TypeError(f"{name} must be an int{' or None' if name in self._OPTIONAL_INTS else ''}, "
                                f"got {value!r}")
        for name in self._FLOATS + ("diffusion_cfg",):
            value = getattr(self, name)
            if value is None and name == "diffusion_cfg":
                continue
            if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value):
                raise TypeError(f"{name} must be a finite number, got {value!r}")
            setattr(self, name, float(value))
        if not isinstance(self.use_residual, bool):
            raise TypeError(f"use_residual must be True or False, got {self.use_residual!r}")
        top_k = self.image_top_k
        if not isinstance(top_k, (tuple, list)) or len(top_k) != 2 or not all(is_int(k) for k in top_k):
            raise TypeError(f"image_top_k must be two ints (early scales, the rest), got {top_k!r}")
        if self.force_image_after is not None:
            if not isinstance(self.force_image_after, str):
                raise TypeError(f"force_image_after must be a regular expression string or None, "
                                f"got {self.force_image_after!r}")
            try:
                re.compile(self.force_image_after)
            except re.error as error:
                raise ValueError(f"force_image_after is not a valid regular expression: {error}") from None

    @classmethod
    def from_kwargs(cls, base: "SamplingConfig | None" = None, **kwargs) -> "SamplingConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown sampling argument(s) {unknown}; accepted: {sorted(known)}")
        values = asdict(base) if base is not None else {}
        values.update(kwargs)
        return cls(**values)

    # -- as transformers' GenerationConfig, saved with a model as generation_config.json ---------
    def to_generation_config(self):
        """A `transformers.GenerationConfig`: the text settings under its own names (temperature 0 is
        `do_sample=False`), the image and control settings beside them as extra fields."""
        from transformers import GenerationConfig

        values = asdict(self)
        temperature = values.pop("temperature")
        values["image_top_k"] = list(values["image_top_k"])
        if temperature > 0:
            values["temperature"] = temperature
        else:  # transformers calls top-k/top-p without sampling invalid; only line retries sample then
            for name in ("top_k", "top_p"):
                if values[name] == getattr(SamplingConfig, name):
                    del values[name]
        return GenerationConfig(do_sample=temperature > 0, **values)

    def save_generation_config(self, folder) -> None:
        """Writes `generation_config.json` into `folder` (atomically; transformers' own writer refuses
        top-k/top-p for line retries of a greedy text)."""
        import json
        from pathlib import Path

        from hart_vlm.outputs import atomic_write

        data = self.to_generation_config().to_diff_dict()
        atomic_write(Path(folder) / GENERATION_CONFIG, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def from_generation_config(cls, config, base: "SamplingConfig | None" = None, **kwargs) -> "SamplingConfig":
        """`base` (default: the defaults) with the settings `config` gives (`generation_settings`),
        then `kwargs`."""
        return cls.from_kwargs(cls.from_kwargs(base, **generation_settings(config)), **kwargs)

    @property
    def head_cfg(self) -> float:
        return self.cfg if self.diffusion_cfg is None else self.diffusion_cfg

    def scale_top_k(self, scale_index: int) -> int:
        return self.image_top_k[0] if scale_index < self.image_top_k_switch else self.image_top_k[1]

    def scale_guidance(self, scale_index: int, num_scales: int) -> float:
        """HART's linearly growing guidance: t = cfg * k / (K - 1)."""
        return self.cfg * scale_index / max(num_scales - 1, 1)


GENERATION_CONFIG = "generation_config.json"


def generation_settings(config) -> dict:
    """The sampling settings a `transformers.GenerationConfig` sets, as `SamplingConfig` keyword
    arguments: only what it sets, so `GenerationConfig(max_new_tokens=64)` changes the length and
    nothing else. Greedy unless `do_sample`, as in transformers. A field neither class knows is an
    error."""
    from transformers import GenerationConfig

    if not isinstance(config, GenerationConfig):
        raise TypeError(f"generation_config must be a transformers.GenerationConfig, got {type(config).__name__}")
    return _settings(config.to_diff_dict())


def _settings(given: dict) -> dict:
    """SamplingConfig keyword arguments from the fields of a generation config (a dict)."""
    from transformers import GenerationConfig

    known, hf_fields = set(SamplingConfig.__dataclass_fields__), set(GenerationConfig().to_dict())
    values = {}
    for key, value in given.items():
        if key in known:
            values[key] = value
        elif key not in hf_fields and key != "transformers_version":
            raise TypeError(f"generation_config has the field {key!r}, which is not a sampling setting; "
                            f"accepted: {sorted(known)} and transformers' own")
    if "do_sample" in given or "temperature" in values:  # transformers: greedy unless do_sample
        values["temperature"] = float(given.get("temperature") or 1.0) if given.get("do_sample") else 0.0
    return values


def model_sampling(model, **kwargs) -> SamplingConfig:
    """The settings a call runs with: the model's saved defaults (`model.generation_config`, a
    `GenerationConfig`; the class defaults without one) with the call's keyword arguments."""
    own = getattr(model, "generation_config", None)
    base = SamplingConfig.from_generation_config(own) if own is not None else None
    return SamplingConfig.from_kwargs(base, **kwargs)


def read_generation_config(folder):
    """The sampling defaults saved in `folder` as a complete `GenerationConfig` (the class defaults
    for what the file leaves out); None when the folder holds no generation_config.json."""
    import json
    import os

    path = os.path.join(folder, GENERATION_CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object is expected, got {type(data).__name__}")
        return SamplingConfig.from_kwargs(**_settings(data)).to_generation_config()
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a valid generation config of hart-vlm sampling settings ({error})") from None


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k then nucleus (Holtzman et al., 2020) filtering along the last dim; removed entries -> -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first always stays)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_from_logits(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Samples one id per row of (..., V) logits; temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1])


def apply_repetition_penalty(logits_BV: torch.Tensor, history: list[list[int]], penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return logits_BV
    logits_BV = logits_BV.clone()
    for b, ids in enumerate(history):
        if not ids:
            continue
        idx = torch.tensor(sorted(set(ids)), device=logits_BV.device)
        idx = idx[idx < logits_BV.shape[-1]]
        picked = logits_BV[b, idx]
        logits_BV[b, idx] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits_BV
