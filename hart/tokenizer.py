"""HART's hybrid tokenizer: discrete multi-scale codes plus continuous residual tokens (HART §3.1).

image ─ encoder ─ quant_conv ─▶ f ─ quantize ─▶ codes of K scales (f_hat) + residual (f - f_hat)
f_hat [+ residual] ─ post_quant_conv ─ decoder ─▶ image (clamped to [-1, 1])

Module names equal the released checkpoint's keys without `vae.`, so `from_pretrained` on an
official HART `tokenizer/` folder is a checked key copy.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hart.autoencoder import Decoder, Encoder
from hart.discriminator import PatchDiscriminator, generator_hinge_loss
from hart.quantizer import MultiScaleResidualQuantizer
from hart.tokenizer_config import OFFICIAL_MODEL_TYPES, HybridTokenizerConfig

MODEL_TYPE = "hart_vlm_hybrid_tokenizer"  # model_type of this library's own save_pretrained folders
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# Release keys that are no part of inference: a usage statistic whose first dimension may differ,
# and the copies of the decoder that `double_decoder` checkpoints carry (HART overwrites them
# with the main decoder when loading and never decodes with them).
_IGNORED_OFFICIAL_KEYS = ("quantize.ema_vocab_hit_SV",)
_DOUBLE_DECODER_PREFIXES = ("decoder2.", "post_quant_conv2.")
# The decoding side: everything after the latent. The rest (encoder, quant_conv, quantize) decides the
# codes and the residual of every image.
DECODER_PREFIXES = ("post_quant_conv.", "decoder.")
_IMAGE_RANGE_TOLERANCE = 0.05  # allows the overshoot of interpolated images, catches [0, 255] input


@dataclass
class HybridEncoding:
    indices: list[torch.Tensor]  # K x (B, pn_k**2) long, row-major flattening of the pn_k x pn_k grid
    residual: torch.Tensor  # (B, z, pn_K, pn_K) continuous residual tokens
    latent: torch.Tensor  # (B, z, pn_K, pn_K) f = quant_conv(encoder(x))
    f_hat: torch.Tensor  # (B, z, pn_K, pn_K) discrete part; f_hat + residual == latent


@dataclass
class TokenizerLosses:
    total: torch.Tensor  # reconstruction + vq + adversarial_weight * adversarial
    reconstruction: torch.Tensor  # MSE between decoded and input images
    vq: torch.Tensor  # VQ commitment + codebook loss (a constant when the quantizer is frozen)
    adversarial: torch.Tensor | None  # generator hinge loss, when a discriminator was given
    branch: Literal["discrete", "continuous"]  # which latent the decoder got this step
    reconstructions: torch.Tensor  # (B, 3, H, W) decoder output (unclamped), for the discriminator


class HybridTokenizer(nn.Module):
    def __init__(self, config: HybridTokenizerConfig):
        super().__init__()
        if not isinstance(config, HybridTokenizerConfig):
            raise TypeError(f"config must be a HybridTokenizerConfig, got {type(config).__name__}")
        self.config = config
        z, ks = config.z_channels, config.quant_conv_ks
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(z, z, kernel_size=ks, padding=ks // 2)
        self.post_quant_conv = nn.Conv2d(z, z, kernel_size=ks, padding=ks // 2)
        self.quantize = MultiScaleResidualQuantizer(config)

    # ----------------------------------------------------------------- input checks
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a float torch.Tensor (B, 3, H, W), got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) with 3 (RGB) channels, got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a float tensor in [-1, 1], got dtype {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images must hold at least one image (batch size 0)")
        H, W = images.shape[-2:]
        f, size = self.config.downsample_factor, self.config.image_size
        if H % f or W % f:
            raise ValueError(
                f"image sides must be multiples of the downsample factor {f}, got {H}x{W}; "
                f"use hart.images.resize_center_crop(image, {size})"
            )
        if H != size or W != size:
            raise ValueError(
                f"this tokenizer's schedule v_patch_nums={self.config.v_patch_nums} ends at a "
                f"{self.config.latent_size}x{self.config.latent_size} latent, so images must be {size}x{size}, "
                f"got {H}x{W}; use hart.images.resize_center_crop(image, {size})"
            )
        low, high = (v.item() for v in torch.aminmax(images.detach()))
        if low != low or high != high:
            raise ValueError("images contain NaN")
        if not -1.0 - _IMAGE_RANGE_TOLERANCE <= low <= high <= 1.0 + _IMAGE_RANGE_TOLERANCE:
            raise ValueError(f"images must be in [-1, 1] (got values in [{low:.3g}, {high:.3g}]); map x to x / 127.5 - 1")
        return images.to(self.quant_conv.weight.dtype)

    def _check_latent(self, latent: torch.Tensor, name: str) -> None:
        side = self.config.latent_size
        if not isinstance(latent, torch.Tensor) or not latent.is_floating_point():
            raise TypeError(f"{name} must be a float torch.Tensor (B, {self.config.z_channels}, {side}, {side})")
        if latent.dim() != 4 or tuple(latent.shape[1:]) != (self.config.z_channels, side, side):
            raise ValueError(
                f"{name} must be (B, {self.config.z_channels}, {side}, {side}), got {tuple(latent.shape)}"
            )

    def _check_codes(self, codes: torch.Tensor, scale_index: int, batch_size: int | None, name: str) -> None:
        pn, z, V = self.config.v_patch_nums[scale_index], self.config.z_channels, self.config.vocab_size
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(codes).__name__}")
        if codes.is_floating_point():
            if codes.dim() != 3 or tuple(codes.shape[1:]) != (pn * pn, z):
                raise ValueError(f"{name} (code vectors) must be (B, {pn * pn}, {z}), got {tuple(codes.shape)}")
        elif codes.dtype == torch.long:
            if codes.dim() != 2 or codes.shape[1] != pn * pn:
                raise ValueError(f"{name} must be (B, {pn * pn}) for scale {scale_index} (side {pn}), got {tuple(codes.shape)}")
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= V):
                raise ValueError(f"{name} holds codes outside [0, {V}): [{int(codes.min())}, {int(codes.max())}]")
        else:
            raise TypeError(f"{name} must be int64 codes or float code vectors, got dtype {codes.dtype}")
        if batch_size is not None and codes.shape[0] != batch_size:
            raise ValueError(f"{name} has batch size {codes.shape[0]}, expected {batch_size}")

    def _check_indices(self, indices: Sequence[torch.Tensor], name: str = "indices") -> None:
        K = self.config.num_scales
        if not isinstance(indices, (list, tuple)) or len(indices) != K:
            raise ValueError(f"{name} must be a list of {K} tensors (one per scale {self.config.v_patch_nums})")
        for k, codes in enumerate(indices):
            if isinstance(codes, torch.Tensor) and codes.is_floating_point():
                raise TypeError(f"{name}[{k}] must be int64 codes, got dtype {codes.dtype}")
            self._check_codes(codes, k, indices[0].shape[0] if k else None, f"{name}[{k}]")

    # ----------------------------------------------------------------- tokenize / detokenize
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> HybridEncoding:
        """(B, 3, H, W) images in [-1, 1] → codes of every scale + continuous residual."""
        images = self._check_images(images)
        latent = self.quant_conv(self.encoder(images))  # (B, z, h, w)
        out = self.quantize(latent)
        return HybridEncoding(indices=out.indices, residual=out.residual, latent=latent, f_hat=out.f_hat)

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, h, w) latent → (B, 3, H, W) images in [-1, 1]."""
        self._check_latent(latent, "latent")
        # channels-last activations: oneDNN's convolutions run about a quarter faster on them on a CPU
        # (docs/experiments/decode_overhead.md); the values agree to ~1e-5
        latent = latent.to(self.post_quant_conv.weight.dtype).contiguous(memory_format=torch.channels_last)
        return self.decoder(self.post_quant_conv(latent)).clamp(-1.0, 1.0).contiguous()

    @torch.no_grad()
    def decode(self, indices: Sequence[torch.Tensor], residual: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (+ residual) → images in [-1, 1]: discrete-only when residual is None, else hybrid."""
        latent = self.indices_to_f_hat(indices)
        if residual is not None:
            self._check_latent(residual, "residual")
            if residual.shape[0] != latent.shape[0]:
                raise ValueError(f"residual has batch size {residual.shape[0]}, indices have {latent.shape[0]}")
            latent = latent + residual.to(latent.dtype)
        return self.decode_latent(latent)

    def indices_to_f_hat(self, indices: Sequence[torch.Tensor]) -> torch.Tensor:
        """Codes of all K scales → discrete latent f_hat (B, z, pn_K, pn_K)."""
        self._check_indices(indices)
        return self.quantize.indices_to_f_hat(list(indices))

    # ----------------------------------------------------------------- next-scale prediction
    def scale_inputs(self, indices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """K-1 teacher-forcing inputs; element k-1 is (B, pn_{k+1}**2, z) = area-resize(f_hat after
        scale k, pn_{k+1}) flattened row-major. Codes of the last scale are accepted and unused."""
        self._check_indices(indices)
        return self.quantize.scale_inputs(list(indices))

    def init_f_hat(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """The empty discrete latent (B, z, pn_K, pn_K) that generation starts from."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        weight = self.quantize.embedding.weight
        side = self.config.latent_size
        return torch.zeros(
            batch_size, self.config.z_channels, side, side, device=device or weight.device, dtype=dtype or weight.dtype
        )

    def next_scale_step(
        self, f_hat: torch.Tensor, scale_index: int, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add the codes of scale `scale_index` (0-based) to f_hat (not in place).

        codes: (B, pn_k**2) int64, or (B, pn_k**2, z) float code vectors (e.g. a Gumbel-softmax
        mixture of codebook rows). Returns (new f_hat, next scale's input (B, pn_{k+1}**2, z)), the
        input being None after the last scale; matches `scale_inputs` exactly for the same codes.
        """
        K = self.config.num_scales
        if not isinstance(scale_index, int) or not 0 <= scale_index < K:
            raise ValueError(f"scale_index must be an int in [0, {K}), got {scale_index!r}")
        self._check_latent(f_hat, "f_hat")
        self._check_codes(codes, scale_index, f_hat.shape[0], "codes")
        return self.quantize.next_scale_step(f_hat, scale_index, codes)

    # ----------------------------------------------------------------- training
    def training_losses(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        continuous_prob: float = 0.5,
        discriminator: PatchDiscriminator | None = None,
        adversarial_weight: float = 0.1,
    ) -> TokenizerLosses:
        """One training forward (HART §3.1, "hybrid tokenizer training").

        The decoder gets the full continuous latent with probability `continuous_prob` and the
        discrete-only latent f_hat otherwise (straight-through gradient to the encoder). Use
        continuous_prob=0 for VAR-style discrete training from scratch; with continuous_prob > 0
        and `config.freeze_codebook_for_hybrid`, encoder, quant_conv and quantizer get no gradient,
        as in HART's hybrid stage. Given a discriminator, adds its generator hinge loss; train the
        discriminator itself with `discriminator.loss(images, losses.reconstructions)`.
        """
        if not 0.0 <= continuous_prob <= 1.0:
            raise ValueError(f"continuous_prob must be in [0, 1], got {continuous_prob!r}")
        if adversarial_weight < 0.0:
            raise ValueError(f"adversarial_weight must be >= 0, got {adversarial_weight!r}")
        images = self._check_images(images)
        frozen = continuous_prob > 0.0 and self.config.freeze_codebook_for_hybrid
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            latent = self.quant_conv(self.encoder(images))  # (B, z, h, w)
            quantized = self.quantize(latent)
        device = generator.device if generator is not None else images.device
        continuous = bool(torch.rand((), generator=generator, device=device) < continuous_prob)
        if continuous:  # f_hat + residual == latent
            decoder_in = latent
        else:  # value of f_hat, gradient of the latent (straight-through)
            decoder_in = latent + (quantized.f_hat - latent).detach()
        reconstructions = self.decoder(self.post_quant_conv(decoder_in))  # (B, 3, H, W)
        reconstruction = F.mse_loss(reconstructions, images)
        total = reconstruction + quantized.vq_loss
        adversarial = None
        if discriminator is not None:
            adversarial = generator_hinge_loss(discriminator(reconstructions))
            total = total + adversarial_weight * adversarial
        return TokenizerLosses(
            total=total,
            reconstruction=reconstruction,
            vq=quantized.vq_loss,
            adversarial=adversarial,
            branch="continuous" if continuous else "discrete",
            reconstructions=reconstructions,
        )

    # ----------------------------------------------------------------- decoder swap
    @torch.no_grad()
    def load_decoder_from(self, other: "HybridTokenizer") -> list[str]:
        """Copies the decoding side (post_quant_conv and decoder) of `other` into this tokenizer.

        `other` must code images exactly as this tokenizer does: same config and bit-identical
        encoder, quant_conv and quantizer (compared in this tokenizer's dtype), which is what a
        decoder-only phase (hybrid stage from step 0 with a frozen codebook) leaves. The codes and the
        residual of every image then stay the same, so an LLM and a residual diffusion head trained on
        this tokenizer's codes keep working and only the pixels change. Raises ValueError otherwise.
        Returns the names of the tensors copied.
        """
        if not isinstance(other, HybridTokenizer):
            raise TypeError(f"other must be a HybridTokenizer, got {type(other).__name__}")
        mine, theirs = self.config.to_dict(), other.config.to_dict()
        if mine != theirs:
            diff = [f"{k}: {mine.get(k)!r} vs {theirs.get(k)!r}" for k in sorted(set(mine) | set(theirs))
                    if mine.get(k) != theirs.get(k)]
            raise ValueError(f"other has a different tokenizer config ({'; '.join(diff)})")
        own, new = self.state_dict(), other.state_dict()
        for name, tensor in own.items():
            if not name.startswith(DECODER_PREFIXES) and not torch.equal(new[name].to(tensor), tensor):
                raise ValueError(
                    f"other codes images differently: its {name} differs from this tokenizer's, so its "
                    "codes and residuals would not be the ones this model learned; train only the decoder "
                    "(hybrid_start_step 0 with freeze_codebook_for_hybrid) from this tokenizer")
        copied = [name for name in own if name.startswith(DECODER_PREFIXES)]
        for name in copied:
            own[name].copy_(new[name])
        return copied

    # ----------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors into `save_directory` (created if needed)."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps({"model_type": MODEL_TYPE, **self.config.to_dict()}, indent=2))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> "HybridTokenizer":
        """Load a `save_pretrained` folder or an official HART `tokenizer/` folder (in eval mode)."""
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {os.fspath(path)!r}")
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in tokenizer folder {os.fspath(path)!r}")
        try:
            raw = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"corrupt {config_file}: {err}") from err
        if not isinstance(raw, dict):
            raise ValueError(f"{config_file} must hold a JSON object")
        model_type = raw.get("model_type")
        if model_type == MODEL_TYPE:
            config = HybridTokenizerConfig.from_dict({k: v for k, v in raw.items() if k != "model_type"})
            weights_file = folder / WEIGHTS_NAME
            if not weights_file.is_file():
                raise FileNotFoundError(f"missing weight file {weights_file}")
            state = _read_weight_file(weights_file, map_location)
        elif model_type in OFFICIAL_MODEL_TYPES:
            config = HybridTokenizerConfig.from_official_dict(raw)
            state = _official_to_own_keys(
                _read_official_weights(folder, map_location),
                prefix=OFFICIAL_MODEL_TYPES[model_type],
                double_decoder=bool(raw.get("double_decoder", False)),
            )
        else:
            raise ValueError(
                f"{config_file} has model_type={model_type!r}; expected {MODEL_TYPE!r} (save_pretrained) "
                f"or an official HART tokenizer ({sorted(OFFICIAL_MODEL_TYPES)})"
            )
        model = cls(config).to(map_location)
        load_checked_state_dict(model, state, source=os.fspath(folder))
        return model.eval()


# --------------------------------------------------------------------- checkpoint helpers
def load_checked_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model` after checking that the key sets and shapes agree exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        def names(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")

        problems = ([f"missing keys: {names(missing)}"] if missing else []) + (
            [f"unexpected keys: {names(unexpected)}"] if unexpected else []
        )
        raise ValueError(f"weights in {source} do not match the architecture; " + "; ".join(problems))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ValueError(f"weights in {source} have wrong shapes (config/checkpoint mismatch): " + "; ".join(wrong[:12]))
    model.load_state_dict(dict(state), strict=True)


def _read_weight_file(file: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            return load_file(str(file), device=str(torch.device(map_location)))
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt or truncated files raise many different types
        raise ValueError(f"cannot read weight file {file}: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weight file {file} must hold a flat dict of tensors")
    return state


def _read_official_weights(folder: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """All `*.safetensors` files of the folder, else `pytorch_model*.bin` (loaded weights_only)."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"missing weight file in {folder}: expected *.safetensors or pytorch_model.bin")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_read_weight_file(file, map_location))
    return state


def _official_to_own_keys(
    state: Mapping[str, torch.Tensor], prefix: str, double_decoder: bool
) -> dict[str, torch.Tensor]:
    """Release keys → module keys: strip `vae.`, drop `disc.*` and the keys inference never uses.
    Keys outside `vae.`/`disc.` are kept under their full name so the check reports them."""
    own: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if prefix and key.startswith("disc."):
            continue
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name in _IGNORED_OFFICIAL_KEYS or (double_decoder and name.startswith(_DOUBLE_DECODER_PREFIXES)):
            continue
        own[name] = value
    return own
