"""The self-supervised losses against a public reference implementation: values and gradients
computed once by lightly (``bench/ssl_goldens.py``, lightly 1.6.0) on fixed inputs, stored in
``tests/data/ssl_goldens.npz``.

Where pyxfer scales a loss differently from lightly on purpose, the test checks the exact
relation: BYOL's ``2 - 2 cos`` summed over both directions is ``4 + 4 x`` lightly's symmetrised
negative cosine similarity ``x``. Everything else matches lightly's definition as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

GOLDEN = Path(__file__).parent / "data" / "ssl_goldens.npz"
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def gold() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


def leaf(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).requires_grad_(True)


def close(got: torch.Tensor, want: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=rtol, atol=atol)


def test_golden_file_names_its_reference(gold: dict[str, np.ndarray]) -> None:
    assert str(gold["meta/lightly"]) == "1.6.0"
    assert GOLDEN.stat().st_size < 200_000


@pytest.mark.parametrize("case", ["ntxent_t05", "ntxent_t01"])
def test_nt_xent_matches_lightly(gold: dict[str, np.ndarray], case: str) -> None:
    from pyxfer.plugins.objectives.simclr import nt_xent

    z1, z2 = leaf(gold[f"{case}/z1"]), leaf(gold[f"{case}/z2"])
    loss = nt_xent(z1, z2, float(gold[f"{case}/temperature"]))
    loss.backward()
    close(loss, gold[f"{case}/loss"])
    close(z1.grad, gold[f"{case}/grad_z1"])
    close(z2.grad, gold[f"{case}/grad_z2"])


def test_moco_loss_and_queue_match_lightly_memory_bank(gold: dict[str, np.ndarray]) -> None:
    """Five steps of MoCo's InfoNCE against a queue of 32 keys, batches of 8: the loss and its
    gradient at each step, and the queue after the keys were enqueued (it wraps once), match
    lightly's ``NTXentLoss`` with a memory bank."""
    from pyxfer.plugins.objectives.moco_v2 import moco_loss

    from pyxfer.objectives.base import create_objective

    class Tiny(nn.Module):
        num_features = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 2)[:, :4]

    obj = create_objective("moco_v2", Tiny(), proj_dim=16, hidden_dim=8, queue_size=32)
    obj.queue.copy_(torch.from_numpy(gold["moco/bank0"]).T)  # (D, K)
    t = float(gold["moco/temperature"])
    for step in range(5):
        q, k = leaf(gold[f"moco/q{step}"]), torch.from_numpy(gold[f"moco/k{step}"])
        qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
        loss = moco_loss(qn, kn, obj.queue.clone(), t)
        loss.backward()
        close(loss, gold[f"moco/loss{step}"], atol=1e-6)
        close(q.grad, gold[f"moco/grad_q{step}"], atol=1e-6)  # float32, as lightly's bank
        obj._enqueue(kn)
    close(obj.queue.T, gold["moco/bank_end"], atol=1e-6)


def test_byol_loss_is_lightly_negative_cosine_scaled(gold: dict[str, np.ndarray]) -> None:
    """pyxfer's symmetric BYOL loss ``mean[2 - 2cos(p1, z2)] + mean[2 - 2cos(p2, z1)]`` (the
    paper's) equals ``4 + 4 x`` for lightly's ``x = (ncs(p1, z2) + ncs(p2, z1)) / 2``, and its
    gradients are 4 times lightly's."""
    from pyxfer.plugins.objectives.byol import byol_loss

    p1, p2 = leaf(gold["byol/p1"]), leaf(gold["byol/p2"])
    z1, z2 = torch.from_numpy(gold["byol/z1"]), torch.from_numpy(gold["byol/z2"])
    loss = (byol_loss(p1, z2) + byol_loss(p2, z1)).mean()
    loss.backward()
    close(loss, 4 + 4 * gold["byol/loss"])
    close(p1.grad, 4 * gold["byol/grad_p1"])
    close(p2.grad, 4 * gold["byol/grad_p2"])


def test_barlow_twins_matches_lightly(gold: dict[str, np.ndarray]) -> None:
    from pyxfer.plugins.objectives.barlow_twins import barlow_twins_loss

    z1, z2 = leaf(gold["barlow/z1"]), leaf(gold["barlow/z2"])
    loss = barlow_twins_loss(z1, z2, 5e-3)["loss"]
    loss.backward()
    close(loss, gold["barlow/loss"])
    close(z1.grad, gold["barlow/grad_z1"])
    close(z2.grad, gold["barlow/grad_z2"])


def test_vicreg_matches_lightly(gold: dict[str, np.ndarray]) -> None:
    from pyxfer.plugins.objectives.vicreg import vicreg_loss

    z1, z2 = leaf(gold["vicreg/z1"]), leaf(gold["vicreg/z2"])
    out = vicreg_loss(z1, z2)
    out["loss"].backward()
    close(out["loss"], gold["vicreg/loss"])
    for term in ("invariance", "variance", "covariance"):
        close(out[term], gold[f"vicreg/{term}"])
    close(z1.grad, gold["vicreg/grad_z1"])
    close(z2.grad, gold["vicreg/grad_z2"])


def test_dino_loss_and_centre_match_lightly(gold: dict[str, np.ndarray]) -> None:
    """Two calls of DINO's loss (2 teacher, 5 student views): the loss, its gradient for every
    student view, and the centre each call leaves, which the next call uses."""
    from pyxfer.plugins.objectives.dino import dino_loss, update_center

    center = torch.from_numpy(gold["dino/center0"]).reshape(1, -1).clone()
    tt, st = float(gold["dino/teacher_temp"]), float(gold["dino/student_temp"])
    for call in range(2):
        teacher = list(torch.from_numpy(gold[f"dino/teacher{call}"]))
        student = [leaf(s) for s in gold[f"dino/student{call}"]]
        loss = dino_loss(student, teacher, center, tt, st)
        loss.backward()
        close(loss, gold[f"dino/loss{call}"])
        close(torch.stack([s.grad for s in student]), gold[f"dino/grad_student{call}"])
        update_center(center, teacher, float(gold["dino/center_momentum"]))
        close(center.reshape(-1), gold[f"dino/center{call + 1}"])


def test_teacher_temperature_warmup_matches_lightly_per_epoch(gold: dict[str, np.ndarray]) -> None:
    """lightly (like the authors' code) warms the teacher temperature up linearly over E epochs,
    reaching the final value at epoch E - 1; pyxfer's schedule reads the run's progress, so the
    same values come at progress ``w * e / (E - 1)`` for a warmup fraction ``w``."""
    from pyxfer.plugins.objectives.dino import teacher_temperature

    epochs, w = int(gold["dino_schedule/epochs"]), 0.3
    got = [teacher_temperature(w * e / (epochs - 1), 0.04, 0.07, w) for e in range(7)]
    np.testing.assert_allclose(got, gold["dino_schedule/temps"], rtol=1e-6)


@pytest.mark.parametrize(("case", "bn"), [("dino_head", False), ("dino_head_bn", True)])
def test_dino_head_matches_lightly_projection_head(
    gold: dict[str, np.ndarray], case: str, bn: bool
) -> None:
    """pyxfer's DINOHead with lightly's DINOProjectionHead weights gives its output: same layer
    order, L2 normalisation before a weight-normalised last layer whose norm is fixed at 1."""
    from pyxfer.objectives.heads import DINOHead

    head = DINOHead(12, 10, hidden_dim=16, bottleneck_dim=8, batch_norm=bn).double().train()
    prefix = f"{case}/"
    state = {
        k[len(prefix) :].replace("layers.", "mlp."): torch.from_numpy(np.array(v))
        for k, v in gold.items()
        if k.startswith(prefix) and k[len(prefix) :] not in ("x", "y")
    }
    np.testing.assert_array_equal(state.pop("last_layer.weight_g").numpy(), 1.0)
    head.load_state_dict(state)
    close(head(torch.from_numpy(gold[f"{case}/x"])), gold[f"{case}/y"])
