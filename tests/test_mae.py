"""MAE (He et al. 2022): patch layout, masking, the masked and per-patch normalised loss written
out with loops, an encoder that never sees the masked patches, learning on a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch
from pyxfer.plugins.objectives.mae import (
    masked_patch_loss,
    patchify,
    random_masking,
    sincos_pos_embed,
    unpatchify,
)
from torch import nn

from pyxfer.backbone import create_backbone
from pyxfer.objectives.base import create_objective

SIZE, PATCH = 16, 4
L = (SIZE // PATCH) ** 2  # 16 patches


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool contention on busy machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vit(in_chans: int = 3) -> nn.Module:
    return create_backbone(
        "vit_tiny",
        img_size=SIZE,
        patch_size=PATCH,
        depth=2,
        embed_dim=32,
        num_heads=2,
        in_chans=in_chans,
    )


def tiny_mae(**kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    opts = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2, **kwargs}
    return create_objective("mae", tiny_vit(), **opts)


def test_patchify_layout_and_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 12, generator=g)
    p = 4
    patches = patchify(x, p)
    assert patches.shape == (2, 2 * 3, p * p * 3)
    for n in range(2):
        for r in range(2):
            for c in range(3):
                block = x[n, :, r * p : (r + 1) * p, c * p : (c + 1) * p]  # (C, p, p)
                hwc = block.permute(1, 2, 0)  # (p, p, C)
                want = [float(hwc[i, j, ch]) for i in range(p) for j in range(p) for ch in range(3)]
                got = patches[n, r * 3 + c].tolist()  # raster order of the grid
                assert got == pytest.approx(want, abs=0)
    assert torch.equal(unpatchify(patches, p, (2, 3), 3), x)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(x, 5)
    with pytest.raises(ValueError, match="patches"):
        unpatchify(patches, p, (3, 3), 3)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.0, 0.9])
def test_random_masking_respects_the_ratio_and_is_seeded(ratio: float) -> None:
    n, length = 6, 20
    torch.manual_seed(3)
    ids_keep, mask, ids_restore = random_masking(n, length, ratio)
    keep = int(length * (1 - ratio))
    assert ids_keep.shape == (n, keep) and mask.shape == (n, length)
    assert torch.equal(mask.sum(dim=1), torch.full((n,), float(length - keep)))
    for i in range(n):
        visible = sorted(ids_keep[i].tolist())
        assert len(set(visible)) == keep
        assert visible == torch.nonzero(mask[i] == 0).flatten().tolist()
        assert sorted(ids_restore[i].tolist()) == list(range(length))  # a permutation
    # ids_restore inverts the shuffle: the first ``keep`` shuffled positions are the visible
    shuffled = torch.argsort(ids_restore, dim=1)
    assert torch.equal(shuffled[:, :keep], ids_keep)
    torch.manual_seed(3)
    again = random_masking(n, length, ratio)
    assert all(torch.equal(a, b) for a, b in zip(again, (ids_keep, mask, ids_restore), strict=True))
    if 0 < keep < length:  # per-sample masks, not one mask for the batch
        assert len({tuple(row.tolist()) for row in mask}) > 1


def hand_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm: bool) -> float:
    """The paper's loss with loops: per-patch standardised targets, MSE on masked patches."""
    total, count = 0.0, 0
    for n in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            if mask[n, i] != 1:
                continue
            t = target[n, i].tolist()
            if norm:
                m = sum(t) / len(t)
                var = sum((v - m) ** 2 for v in t) / (len(t) - 1)  # unbiased, as torch.var
                t = [(v - m) / math.sqrt(var + 1e-6) for v in t]
            p = pred[n, i].tolist()
            total += sum((a - b) ** 2 for a, b in zip(p, t, strict=True)) / len(t)
            count += 1
    return total / count


@pytest.mark.parametrize("norm", [True, False])
def test_masked_patch_loss_matches_hand_computation(norm: bool) -> None:
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 5, 12, generator=g)
    target = 3 + 2 * torch.randn(2, 5, 12, generator=g)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 1, 1, 0]])  # fixed mask
    got = masked_patch_loss(pred, target, mask, norm_pix_loss=norm)
    assert float(got) == pytest.approx(hand_loss(pred, target, mask, norm), rel=1e-5)
    # visible patches do not count: changing them changes nothing
    pred2, target2 = pred.clone(), target.clone()
    pred2[mask == 0] += 100.0
    target2[mask == 0] -= 50.0
    assert float(masked_patch_loss(pred2, target2, mask, norm)) == pytest.approx(float(got))
    if norm:  # per-patch normalisation: an affine change of a target patch changes nothing
        target3 = target.clone()
        target3[0, 0] = 7 * target3[0, 0] - 4
        assert float(masked_patch_loss(pred, target3, mask, True)) == pytest.approx(
            float(got), rel=1e-4
        )


def test_objective_loss_is_the_masked_loss_of_its_reconstruction() -> None:
    """The whole forward pass: with the mask fixed by the seed, the loss equals the loop
    computation on the decoder's prediction and the image's patches, and only the masked
    patches (75 %) enter it."""
    obj = tiny_mae()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(3, 3, SIZE, SIZE, generator=g)
    torch.manual_seed(5)
    pred, target, mask = obj.reconstruct(images)
    torch.manual_seed(5)
    _, want_mask, _ = random_masking(3, L, 0.75)
    assert torch.equal(mask, want_mask)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), 12.0))  # 75 % of 16
    assert pred.shape == target.shape == (3, L, PATCH * PATCH * 3)
    assert torch.equal(target, patchify(images, PATCH))
    torch.manual_seed(5)
    loss = obj([images])["loss"]
    assert loss.item() == pytest.approx(hand_loss(pred.detach(), target, mask, True), rel=1e-5)
    obj_raw = tiny_mae(norm_pix_loss=False)
    torch.manual_seed(5)
    pred_raw, _, _ = obj_raw.reconstruct(images)
    torch.manual_seed(5)
    loss_raw = obj_raw([images])["loss"]
    want = hand_loss(pred_raw.detach(), target, mask, False)
    assert loss_raw.item() == pytest.approx(want, rel=1e-5)


def test_encoder_never_sees_the_masked_patches() -> None:
    obj = tiny_mae().eval()
    g = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, SIZE, SIZE, generator=g)
    torch.manual_seed(9)
    pred, _, mask = obj.reconstruct(images)
    # overwrite the pixels of every masked patch: the prediction must not change
    patches = patchify(images, PATCH)
    patches = torch.where(mask.bool().unsqueeze(-1), torch.randn_like(patches) * 5, patches)
    changed = unpatchify(patches, PATCH, (SIZE // PATCH, SIZE // PATCH), 3)
    assert not torch.allclose(changed, images)
    torch.manual_seed(9)
    pred2, _, mask2 = obj.reconstruct(changed)
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(pred2, pred, rtol=1e-5, atol=1e-5)
    # ... while a visible patch does change it
    vis = int(torch.nonzero(mask[0] == 0)[0, 0])
    patches[0, vis] += 3.0
    torch.manual_seed(9)
    pred3, _, _ = obj.reconstruct(unpatchify(patches, PATCH, (SIZE // PATCH,) * 2, 3))
    assert not torch.allclose(pred3, pred, atol=1e-3)


def test_vit_encoder_split_matches_forward_features() -> None:
    torch.manual_seed(0)
    vit = tiny_vit().eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    tokens = vit.embed_patches(x)
    assert tokens.shape == (2, L, 32)
    torch.testing.assert_close(vit.encode_tokens(tokens), vit.forward_features(x))
    sub = vit.encode_tokens(tokens[:, [3, 0, 7]])  # any subset of tokens
    assert sub.shape == (2, 4, 32)


def test_sincos_pos_embed() -> None:
    pos = sincos_pos_embed(8, (2, 3))
    assert pos.shape == (1, 6, 8)
    # token (r, c) = 3 r + c: the first half encodes the row, the second the column
    for r in range(2):
        for c in range(3):
            row, col = pos[0, 3 * r + c, :4], pos[0, 3 * r + c, 4:]
            want_row = [math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)]
            want_col = [math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]
            assert row.tolist() == pytest.approx(want_row, abs=1e-6)
            assert col.tolist() == pytest.approx(want_col, abs=1e-6)


def test_few_steps_reduce_the_loss_and_learn_to_reconstruct() -> None:
    """On a fixed batch of smooth images, the masked-patch error falls well below its start."""
    obj = tiny_mae(norm_pix_loss=False)
    g = torch.Generator().manual_seed(4)
    ramp = torch.linspace(-1, 1, SIZE)
    base = torch.stack([ramp.view(1, -1).expand(SIZE, SIZE), ramp.view(-1, 1).expand(SIZE, SIZE)])
    coef = torch.randn(8, 3, 2, generator=g)
    images = torch.einsum("ncb,bhw->nchw", coef, base)  # (8, 3, 16, 16) planar gradients
    opt = torch.optim.AdamW(obj.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        torch.manual_seed(step)  # a new mask every step
        loss = obj([images])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, losses


def test_pretrain_engine_runs_mae_on_digits() -> None:
    from pyxfer.engine import pretrain

    result = pretrain(
        "digits",
        backbone="vit_tiny",
        backbone_opts={
            "img_size": 8,
            "patch_size": 2,
            "depth": 1,
            "embed_dim": 16,
            "num_heads": 2,
            "in_chans": 1,
        },
        objective="mae",
        objective_opts={"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
        max_steps=3,
        batch_size=32,
        threads=1,
        device="cpu",
    )
    assert result.step == 3 and math.isfinite(result.last_metrics["loss"])


def test_bad_backbone_and_arguments_raise_value_errors() -> None:
    resnet = create_backbone("resnet18", stem="small", width=0.125)
    with pytest.raises(ValueError, match="backbone: MAE needs a vision transformer"):
        create_objective("mae", resnet)
    with pytest.raises(ValueError, match="mask_ratio"):
        create_objective("mae", tiny_vit(), mask_ratio=1.0)
    with pytest.raises(ValueError, match="decoder_dim"):
        create_objective("mae", tiny_vit(), decoder_dim=30, decoder_heads=4)
    obj = tiny_mae()
    with pytest.raises(ValueError, match="images"):
        obj([torch.zeros(2, 1, SIZE, SIZE)])
    with pytest.raises(ValueError, match="views"):
        obj([])
