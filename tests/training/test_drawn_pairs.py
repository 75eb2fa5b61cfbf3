"""Drawn latents paired with renders (hart_vlm/training/drawn_pairs.py): storage, the decoder batch
and its loss, which for renders is the tokenizer's own reconstruction loss."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from hart_vlm.training.drawn_pairs import DecoderItems, DrawnPairs, decoder_losses


def tiny_tokenizer() -> HybridTokenizer:
    torch.manual_seed(0)
    return HybridTokenizer(HybridTokenizerConfig.from_preset("tiny"))


def latent_shape(tok: HybridTokenizer) -> tuple[int, int, int]:
    return tok.config.z_channels, tok.config.latent_size, tok.config.latent_size


def some_pairs(tok: HybridTokenizer, guides=(3, 7), pictures=2) -> DrawnPairs:
    g = torch.Generator().manual_seed(1)
    size = tok.config.image_size
    rows = [(torch.randn(pictures, *latent_shape(tok), generator=g), torch.randn(pictures, *latent_shape(tok), generator=g),
             torch.rand(pictures, 3, size, size, generator=g) * 2 - 1, guide) for guide in guides]
    return DrawnPairs.empty({"model": "tiny"}).extend(rows)


def test_pairs_extend_save_and_load(tmp_path):
    tok = tiny_tokenizer()
    pairs = some_pairs(tok)
    assert len(pairs) == 4 and pairs.guides.tolist() == [3, 3, 7, 7]
    assert pairs.images.dtype == torch.uint8 and pairs.f_hat.dtype == torch.float16
    size = tok.config.image_size
    more = pairs.extend([(torch.zeros(1, *latent_shape(tok)), torch.zeros(1, *latent_shape(tok)),
                          -torch.ones(1, 3, size, size), 11)])
    assert len(more) == 5 and more.guides.tolist()[-1] == 11 and int(more.images[-1].max()) == 0
    pairs.save(tmp_path / "p.safetensors")
    loaded = DrawnPairs.load(tmp_path / "p.safetensors")
    assert loaded.info == {"model": "tiny"}
    for name in ("f_hat", "residual", "images", "guides"):
        assert torch.equal(getattr(loaded, name), getattr(pairs, name))
    assert not (tmp_path / "p.safetensors.tmp").exists()


def test_pairs_errors_name_the_problem(tmp_path):
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="drawn pairs file not found"):
        DrawnPairs.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something/1"})
    with pytest.raises(ValueError, match="is not a drawn pairs file"):
        DrawnPairs.load(tmp_path / "other.safetensors")
    pairs = some_pairs(tok)
    with pytest.raises(ValueError, match="one row per picture"):
        DrawnPairs(pairs.f_hat[:1], pairs.residual, pairs.images, pairs.guides, {})
    with pytest.raises(ValueError, match="uint8"):
        DrawnPairs(pairs.f_hat, pairs.residual, pairs.images.float(), pairs.guides, {})
    with pytest.raises(ValueError, match="another image tokenizer"):
        DecoderItems(pairs, (4, 2, 2))


class Images(Dataset):
    """Images as the image datasets of train_tokenizer.py yield them: one tensor per item."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


@pytest.mark.parametrize("continuous", [1.0, 0.0])
def test_on_renders_the_loss_is_the_tokenizers_reconstruction_loss(continuous):
    tok = tiny_tokenizer()
    size = tok.config.image_size
    renders = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    items = DecoderItems(Images(renders), latent_shape(tok))
    batch = next(iter(DataLoader(items, batch_size=3)))
    assert not batch["drawn"].any() and torch.equal(batch["images"], renders)
    mine = decoder_losses(tok, batch, continuous_prob=continuous)["reconstruction"]
    theirs = tok.training_losses(renders, continuous_prob=continuous).reconstruction
    assert torch.allclose(mine, theirs, atol=1e-6)


def test_drawn_rows_are_decoded_from_their_own_latents_and_train_the_decoder_alone():
    tok = tiny_tokenizer()
    size = tok.config.image_size
    pairs = some_pairs(tok)
    renders = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    items = ConcatDataset([DecoderItems(Images(renders), latent_shape(tok)), DecoderItems(pairs, latent_shape(tok))])
    batch = next(iter(DataLoader(items, batch_size=len(items))))
    assert batch["drawn"].tolist() == [False, False, True, True, True, True]
    target = pairs.images.float() / 127.5 - 1
    assert torch.equal(batch["images"][2:], target)
    # continuous: f_hat + residual; discrete: f_hat alone (the picture with the residual head off)
    for prob, latent in ((1.0, pairs.f_hat.float() + pairs.residual.float()), (0.0, pairs.f_hat.float())):
        tok.zero_grad()
        loss = decoder_losses(tok, batch, continuous_prob=prob)["loss"]
        loss.backward()
        enc = tok.encode(renders)
        seen = torch.cat([enc.f_hat + enc.residual if prob else enc.f_hat, latent])
        with torch.no_grad():
            expected = (tok.decoder(tok.post_quant_conv(seen)) - batch["images"]).pow(2).mean()
        assert torch.allclose(loss, expected, atol=1e-6)
        trained = {n for n, p in tok.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert trained and all(n.startswith(("decoder.", "post_quant_conv.")) for n in trained)
