"""Configuration of HART's hybrid tokenizer (HART §3.1; field names of the released checkpoint).

The field names are those of the released `tokenizer/config.json` (HART_REFERENCE.md §1), so an
official config maps onto this dataclass field by field; `num_res_blocks` and `norm_num_groups`
are fixed to 2 and 32 in HART and exist here only so that small test models can shrink them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping

QuantizerType = Literal["var", "var_hybrid"]

# Scale schedules of the released models (HART_REFERENCE.md §1): the last side is the latent side.
HART_SCHEDULES: dict[int, tuple[int, ...]] = {
    256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
    512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32),
    1024: (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64),
}

# model_type of the released tokenizer folder (weights under `vae.`), and of a bare autoencoder.
OFFICIAL_MODEL_TYPES: dict[str, str] = {"hart_autoencoder_with_disc": "vae.", "hart_autoencoder": ""}


def _as_int_tuple(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of positive ints, got {value!r}")
    items = tuple(value)
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}")
    return items


@dataclass
class HybridTokenizerConfig:
    """Architecture of the hybrid tokenizer: conv autoencoder + multi-scale residual quantizer."""

    vocab_size: int = 4096  # codebook entries V, shared by all scales
    z_channels: int = 32  # latent channels z (one codebook vector has z entries)
    ch: int = 160  # base width of the conv autoencoder
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # width multiplier per level; 2**(levels-1) = downsample
    num_res_blocks: int = 2  # ResnetBlocks per encoder level (the decoder has one more)
    norm_num_groups: int = 32  # GroupNorm groups (HART: 32)
    dropout: float = 0.0  # dropout inside the ResnetBlocks
    beta: float = 0.25  # weight of the commitment term beta * ||sg(f_hat) - f||^2
    using_znorm: bool = False  # nearest code by cosine similarity instead of Euclidean distance
    quant_conv_ks: int = 3  # kernel size of quant_conv / post_quant_conv
    quant_resi: float = 0.5  # phi mixing ratio r: phi(h) = (1 - |r|) h + |r| conv(h); 0 = no phi
    share_quant_resi: int = 4  # 0: one phi per scale, 1: one shared phi, n > 1: n partially shared
    default_qresi_counts: int = 0  # number of phis when share_quant_resi == 0 (0 = one per scale)
    v_patch_nums: tuple[int, ...] = HART_SCHEDULES[256]  # scale sides, small to large
    quantizer_type: QuantizerType = "var_hybrid"  # "var": VAR's tokenizer (phi on the last scale too)
    disable_quant_resi: bool = False  # phi is the identity (no phi convs are built)
    freeze_codebook_for_hybrid: bool = True  # hybrid training leaves encoder + quantizer frozen

    def __post_init__(self) -> None:
        for name in ("vocab_size", "z_channels", "ch", "num_res_blocks", "norm_num_groups", "quant_conv_ks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("share_quant_resi", "default_qresi_counts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        self.ch_mult = _as_int_tuple(self.ch_mult, "ch_mult")
        self.v_patch_nums = _as_int_tuple(self.v_patch_nums, "v_patch_nums")
        if len(self.v_patch_nums) < 2:
            raise ValueError(f"v_patch_nums needs at least 2 scales, got {self.v_patch_nums}")
        if any(b <= a for a, b in zip(self.v_patch_nums, self.v_patch_nums[1:])):
            raise ValueError(f"v_patch_nums must be strictly increasing, got {self.v_patch_nums}")
        widths = {self.ch * m for m in self.ch_mult}
        if any(w % self.norm_num_groups for w in widths):
            raise ValueError(
                f"norm_num_groups={self.norm_num_groups} must divide every level width "
                f"ch * ch_mult = {sorted(widths)}"
            )
        if self.quant_conv_ks % 2 == 0:
            raise ValueError(f"quant_conv_ks must be odd (same-size conv), got {self.quant_conv_ks}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if float(self.beta) < 0.0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if not -1.0 <= float(self.quant_resi) <= 1.0:
            raise ValueError(f"quant_resi must be in [-1, 1] (|r| is the phi mixing ratio), got {self.quant_resi!r}")
        if self.quantizer_type not in ("var", "var_hybrid"):
            raise ValueError(f"quantizer_type must be 'var' or 'var_hybrid', got {self.quantizer_type!r}")
        for name in ("using_znorm", "disable_quant_resi", "freeze_codebook_for_hybrid"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    # ----------------------------------------------------------------- derived sizes
    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        return self.v_patch_nums[-1] * self.downsample_factor

    @property
    def num_scales(self) -> int:
        return len(self.v_patch_nums)

    @property
    def latent_size(self) -> int:
        return self.v_patch_nums[-1]

    @property
    def tokens_per_image(self) -> int:
        """Discrete tokens of one image over all scales (680 for HART 256px)."""
        return sum(pn * pn for pn in self.v_patch_nums)

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["v_patch_nums"] = list(self.v_patch_nums)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HybridTokenizerConfig":
        """Inverse of `to_dict`; unknown keys are an error (they are likely typos)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown HybridTokenizerConfig fields {unknown}; accepted: {sorted(names)}")
        return cls(**dict(d))

    @classmethod
    def from_official_dict(cls, d: Mapping[str, Any]) -> "HybridTokenizerConfig":
        """Read a released HART `tokenizer/config.json`.

        Keeps the architecture fields and ignores the rest ("architectures", "_name_or_path",
        "transformers_version", "disc_*", "test_mode", "levels", "hybrid", "double_decoder", ...).
        `disable_quant_resi` is forced to False: HART's code stores it but never applies it (its
        hybrid quantizer is not even given it), so honouring it would change the codes.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping, got {type(d).__name__}")
        if d.get("model_type") not in OFFICIAL_MODEL_TYPES:
            raise ValueError(
                f"not an official HART tokenizer config: model_type={d.get('model_type')!r}, "
                f"expected one of {sorted(OFFICIAL_MODEL_TYPES)}"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"num_res_blocks", "norm_num_groups"}
        kept = {k: v for k, v in d.items() if k in names}
        kept["disable_quant_resi"] = False
        kept.setdefault("quantizer_type", "var")  # HART's own default
        return cls(**kept)

    @classmethod
    def from_preset(cls, name: str) -> "HybridTokenizerConfig":
        """Named configurations: "hart_1024px", "hart_512px", "hart_256px" (the released
        160-channel architecture with that resolution's schedule) and "tiny" (CPU tests)."""
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(_PRESETS)}")
        return cls(**_PRESETS[name])


_PRESETS: dict[str, dict[str, Any]] = {
    "hart_1024px": dict(v_patch_nums=HART_SCHEDULES[1024]),
    "hart_512px": dict(v_patch_nums=HART_SCHEDULES[512]),
    "hart_256px": dict(v_patch_nums=HART_SCHEDULES[256]),
    # The embedded default model's tokenizer (DESIGN.md §6): 128 px, downsample 16, so the
    # discrete grid is a coarse 8 x 8 over six scales (130 codes, six LLM passes per image) and
    # the continuous residual carries the detail; 4.56M parameters, small enough for a 2-core CPU.
    "default_128px": dict(
        vocab_size=2048,
        z_channels=32,
        ch=32,
        ch_mult=(1, 2, 2, 4, 4),
        num_res_blocks=1,
        v_patch_nums=(1, 2, 3, 4, 6, 8),
    ),
    # ~0.3M parameters, 32 px images (latent 4 x 4, downsample 8): fast enough for CPU tests.
    "tiny": dict(
        vocab_size=256,
        z_channels=8,
        ch=16,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=1,
        norm_num_groups=8,
        v_patch_nums=(1, 2, 3, 4),
    ),
}
