import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hart.quantizer import MultiScaleResidualQuantizer, phi_index
from hart.tokenizer_config import HART_SCHEDULES, HybridTokenizerConfig


def small_config(**overrides) -> HybridTokenizerConfig:
    fields = dict(vocab_size=64, z_channels=4, ch=8, ch_mult=(1, 2), num_res_blocks=1, norm_num_groups=4,
                  v_patch_nums=(1, 2, 3, 5, 8))
    fields.update(overrides)
    return HybridTokenizerConfig(**fields)


def make_quantizer(seed: int = 0, **overrides) -> MultiScaleResidualQuantizer:
    torch.manual_seed(seed)
    return MultiScaleResidualQuantizer(small_config(**overrides))


# --------------------------------------------------------------------------- phi selection
def test_phi_selection_for_the_released_10_and_14_scale_schedules():
    # share_quant_resi=4: ticks at linspace(1/12, 11/12, 4); the last scale of the hybrid
    # tokenizer gets no phi. k=2 and k=7 of 10 scales sit on ties broken by float64 rounding.
    q256 = MultiScaleResidualQuantizer(small_config(v_patch_nums=HART_SCHEDULES[256]))
    assert q256.phi_indices == (0, 0, 1, 1, 1, 2, 2, 3, 3, None)
    assert [phi_index(k, 10, 4) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    q1024 = MultiScaleResidualQuantizer(small_config(v_patch_nums=HART_SCHEDULES[1024]))
    assert q1024.phi_indices == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, None)


def test_phi_sharing_variants_and_their_keys():
    per_scale = make_quantizer(share_quant_resi=0)
    assert per_scale.phi_indices == (0, 1, 2, 3, None)
    assert "quant_resi.qresi_ls.4.weight" in per_scale.state_dict()
    shared = make_quantizer(share_quant_resi=1)
    assert shared.phi_indices == (0, 0, 0, 0, None)
    assert "quant_resi.qresi.weight" in shared.state_dict()
    assert not any("qresi_ls" in k for k in shared.state_dict())
    two = make_quantizer(share_quant_resi=2)  # ticks 0.25, 0.75; k/(K-1) = 0.5 is a tie: the first wins
    assert two.phi_indices == (0, 0, 0, 1, None)
    var_style = make_quantizer(quantizer_type="var")  # VAR's tokenizer: phi on the last scale too
    assert var_style.phi_indices[-1] == phi_index(4, 5, 4)
    for disabled in (make_quantizer(disable_quant_resi=True), make_quantizer(quant_resi=0.0)):
        assert disabled.phi_indices == (None,) * 5
        assert not any("quant_resi" in k for k in disabled.state_dict())


def test_phi_mixes_input_and_conv_with_the_absolute_ratio():
    q = make_quantizer(quant_resi=-0.3)
    h = torch.randn(2, 4, 8, 8)
    phi = q.quant_resi[1]
    expected = 0.7 * h + 0.3 * F.conv2d(h, phi.weight, phi.bias, padding=1)
    torch.testing.assert_close(phi(h), expected)


# --------------------------------------------------------------------------- nearest codes
@pytest.mark.parametrize("using_znorm", [False, True])
def test_nearest_code_matches_brute_force(using_znorm):
    q = make_quantizer(using_znorm=using_znorm)
    z = torch.randn(300, 4)
    codebook = q.embedding.weight.detach()
    if using_znorm:
        brute = torch.stack([(F.cosine_similarity(row[None], codebook, dim=1)).argmax() for row in z])
    else:
        brute = torch.stack([((row[None] - codebook) ** 2).sum(1).argmin() for row in z])
    assert torch.equal(q.nearest_codes(z), brute)


# --------------------------------------------------------------------------- hybrid extraction
def reference_encode(f, codebook, phi_convs, scales, ratio=0.5):
    """HART_REFERENCE.md §3 written out position by position, from raw tensors: the codebook
    (V, z) and the phi convs as (weight, bias) pairs. Independent of the library's quantizer."""
    B, z, H, W = f.shape
    f_rest, f_hat, indices = f.clone(), torch.zeros_like(f), []
    for k, pn in enumerate(scales):
        r = F.adaptive_avg_pool2d(f_rest, pn) if pn != H else f_rest  # area resize
        idx = torch.empty(B, pn, pn, dtype=torch.long)
        for b in range(B):
            for i in range(pn):
                for j in range(pn):
                    idx[b, i, j] = torch.cdist(r[b, :, i, j][None].double(), codebook.double()).argmin()
        h = codebook[idx].permute(0, 3, 1, 2)  # (B, z, pn, pn)
        if pn != H:
            h = F.interpolate(h, size=(H, W), mode="bicubic", align_corners=False)
        if k < len(scales) - 1:  # the hybrid tokenizer's last scale gets no phi
            weight, bias = phi_convs[phi_index(k, len(scales), len(phi_convs))]
            h = (1 - ratio) * h + ratio * F.conv2d(h, weight, bias, padding=1)
        f_hat, f_rest = f_hat + h, f_rest - h
        indices.append(idx.reshape(B, pn * pn))
    return indices, f_hat, f_rest


def test_extraction_matches_the_reference_and_splits_the_latent_exactly():
    q = make_quantizer()
    f = torch.randn(2, 4, 8, 8)
    out = q(f)
    phis = [(conv.weight.detach(), conv.bias.detach()) for conv in q.quant_resi.qresi_ls]
    ref_indices, ref_f_hat, ref_residual = reference_encode(f, q.embedding.weight.detach(), phis, q.config.v_patch_nums)
    assert [i.shape for i in out.indices] == [(2, 1), (2, 4), (2, 9), (2, 25), (2, 64)]
    for ours, ref in zip(out.indices, ref_indices):
        assert torch.equal(ours, ref)
    torch.testing.assert_close(out.f_hat, ref_f_hat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.residual, ref_residual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.f_hat + out.residual, f, atol=1e-6, rtol=0)
    torch.testing.assert_close(q.indices_to_f_hat(out.indices), out.f_hat, atol=0, rtol=0)


def test_scale_inputs_match_the_incremental_steps_exactly():
    q = make_quantizer()
    out = q(torch.randn(3, 4, 8, 8))
    inputs = q.scale_inputs(out.indices)
    assert [t.shape for t in inputs] == [(3, 4, 4), (3, 9, 4), (3, 25, 4), (3, 64, 4)]
    f_hat = torch.zeros(3, 4, 8, 8)
    for k, codes in enumerate(out.indices):
        before = f_hat.clone()
        new_f_hat, next_input = q.next_scale_step(f_hat, k, codes)
        assert torch.equal(f_hat, before)  # not in place
        if k < len(out.indices) - 1:
            assert torch.equal(next_input, inputs[k])
            pn = q.config.v_patch_nums[k + 1]
            area = F.adaptive_avg_pool2d(new_f_hat, pn) if pn != 8 else new_f_hat
            torch.testing.assert_close(next_input, area.flatten(2).transpose(1, 2))  # row-major
        else:
            assert next_input is None
        f_hat = new_f_hat
    torch.testing.assert_close(f_hat, out.f_hat, atol=0, rtol=0)


def test_soft_code_vectors_equal_hard_codes_when_one_hot():
    q = make_quantizer()
    codes = torch.randint(0, 64, (2, 9))
    vectors = F.one_hot(codes, 64).float() @ q.embedding.weight  # (B, 9, z), what a Gumbel mixture gives
    f_hat = torch.randn(2, 4, 8, 8)
    hard = q.next_scale_step(f_hat, 2, codes)
    soft = q.next_scale_step(f_hat, 2, vectors)
    torch.testing.assert_close(soft[0], hard[0])
    torch.testing.assert_close(soft[1], hard[1])


def test_vq_loss_trains_codebook_and_phi_and_commits_the_latent():
    q = make_quantizer()
    f = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = q(f)
    out.vq_loss.backward()
    assert out.vq_loss.item() > 0
    assert q.embedding.weight.grad.abs().sum() > 0
    assert q.quant_resi.qresi_ls[0].weight.grad.abs().sum() > 0
    assert f.grad.abs().sum() > 0  # beta * ||sg(f_hat) - f||^2
    assert not out.residual.requires_grad
    assert np.isfinite(out.vq_loss.item())


# --------------------------------------------------------------------------- self-correction
