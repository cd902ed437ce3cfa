"""Write ``tests/data/ssl_goldens.npz``: the self-supervised losses of lightly, a public reference
implementation, on fixed seeded inputs, for ``tests/test_ssl_goldens.py``.

Runs in an environment with ``lightly`` and torch (pyxfer is not imported and not needed); the
file was written with lightly 1.6.0 and torch 2.13.0 (CPU), installed with
``pip install torch==2.13.0 torchvision==0.28.0 && pip install --no-deps lightly`` (the losses
need neither lightly's other dependencies nor torchvision's compiled operators). For each loss
the file holds the inputs, lightly's value and its gradient with respect to every input that
takes one (keys ``CASE/NAME``):

- ``ntxent_t05``, ``ntxent_t01``: ``NTXentLoss`` (SimCLR) at temperature 0.5 and 0.1;
- ``moco``: ``NTXentLoss`` with a memory bank (MoCo), five steps from a given bank of 32 keys
  with batches of 8 (the bank wraps around once), the loss and gradient of each step;
- ``byol``: ``NegativeCosineSimilarity`` in BYOL's symmetric form
  ``(ncs(p1, z2) + ncs(p2, z1)) / 2``;
- ``barlow``: ``BarlowTwinsLoss`` (lambda 5e-3);
- ``vicreg``: ``VICRegLoss`` (25 / 25 / 1) and its three terms;
- ``dino``: ``DINOLoss`` with 2 teacher and 5 student views, a given centre and teacher
  temperature 0.07, two calls in a row (the second with the centre the first one moved);
  ``dino_schedule``: the teacher-temperature warmup of ``DINOLoss`` (per epoch);
- ``dino_head``, ``dino_head_bn``: ``DINOProjectionHead`` weights, an input and its output
  (without and with batch norm, training mode).

    python bench/ssl_goldens.py --out tests/data/ssl_goldens.npz
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _leaf(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "ssl_goldens.npz"))
    args = ap.parse_args()

    import lightly
    from lightly.loss import (
        BarlowTwinsLoss,
        DINOLoss,
        NegativeCosineSimilarity,
        NTXentLoss,
        VICRegLoss,
    )
    from lightly.loss.vicreg_loss import covariance_loss, invariance_loss, variance_loss
    from lightly.models.modules.heads import DINOProjectionHead

    g = torch.Generator().manual_seed(2021)
    out: dict[str, np.ndarray] = {
        "meta/lightly": np.array(lightly.__version__),
        "meta/torch": np.array(torch.__version__),
    }

    # SimCLR: NT-Xent, in-batch negatives (float64)
    for key, temp in (("ntxent_t05", 0.5), ("ntxent_t01", 0.1)):
        z1, z2 = _leaf(g, 8, 16), _leaf(g, 8, 16)
        loss = NTXentLoss(temperature=temp)(z1, z2)
        loss.backward()
        out |= {f"{key}/z1": _np(z1), f"{key}/z2": _np(z2), f"{key}/temperature": np.array(temp)}
        out |= {
            f"{key}/loss": _np(loss),
            f"{key}/grad_z1": _np(z1.grad),
            f"{key}/grad_z2": _np(z2.grad),
        }

    # MoCo: NT-Xent against a memory bank (float32, the bank's dtype); lightly normalises the
    # inputs, returns the bank as it was and then enqueues the (normalised) keys
    crit = NTXentLoss(temperature=0.2, memory_bank_size=(32, 16))
    bank0 = nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1)
    crit.memory_bank.bank = bank0.clone()
    crit.memory_bank.bank_ptr.zero_()
    out["moco/bank0"] = _np(bank0)  # (K, D): row j is pyxfer's queue column j
    out["moco/temperature"] = np.array(0.2)
    for step in range(5):
        q, k = _leaf(g, 8, 16, dtype=torch.float32), torch.randn(8, 16, generator=g)
        loss = crit(q, k)
        loss.backward()
        out |= {f"moco/q{step}": _np(q), f"moco/k{step}": _np(k), f"moco/loss{step}": _np(loss)}
        out[f"moco/grad_q{step}"] = _np(q.grad)
    out["moco/bank_end"] = _np(crit.memory_bank.bank)

    # BYOL: negative cosine similarity, symmetrised as in lightly's BYOL example
    p1, p2, z1, z2 = (_leaf(g, 8, 16) for _ in range(4))
    ncs = NegativeCosineSimilarity()
    loss = 0.5 * (ncs(p1, z2.detach()) + ncs(p2, z1.detach()))
    loss.backward()
    out |= {f"byol/{n}": _np(t) for n, t in (("p1", p1), ("p2", p2), ("z1", z1), ("z2", z2))}
    out |= {"byol/loss": _np(loss), "byol/grad_p1": _np(p1.grad), "byol/grad_p2": _np(p2.grad)}

    # Barlow Twins
    z1, z2 = _leaf(g, 16, 8), _leaf(g, 16, 8)
    loss = BarlowTwinsLoss(lambda_param=5e-3)(z1, z2)
    loss.backward()
    out |= {"barlow/z1": _np(z1), "barlow/z2": _np(z2), "barlow/loss": _np(loss)}
    out |= {"barlow/grad_z1": _np(z1.grad), "barlow/grad_z2": _np(z2.grad)}

    # VICReg
    z1, z2 = _leaf(g, 16, 8), _leaf(g, 16, 8)
    loss = VICRegLoss()(z1, z2)
    loss.backward()
    out |= {"vicreg/z1": _np(z1), "vicreg/z2": _np(z2), "vicreg/loss": _np(loss)}
    out |= {"vicreg/grad_z1": _np(z1.grad), "vicreg/grad_z2": _np(z2.grad)}
    with torch.no_grad():
        out["vicreg/invariance"] = _np(invariance_loss(z1, z2))
        out["vicreg/variance"] = _np(0.5 * (variance_loss(z1) + variance_loss(z2)))
        out["vicreg/covariance"] = _np(covariance_loss(z1) + covariance_loss(z2))

    # DINO: 2 global teacher views, 2 global + 3 local student views, K = 32, a given centre
    crit = DINOLoss(output_dim=32, center_momentum=0.9)
    center0 = 0.5 * torch.randn(1, 1, 32, generator=g, dtype=torch.float64)
    crit.center = center0.clone()
    out["dino/center0"] = _np(center0.reshape(32))
    out["dino/teacher_temp"] = np.array(0.07)
    out["dino/student_temp"] = np.array(0.1)
    out["dino/center_momentum"] = np.array(0.9)
    for call in range(2):
        teacher = [torch.randn(8, 32, generator=g, dtype=torch.float64) for _ in range(2)]
        student = [_leaf(g, 8, 32) for _ in range(5)]
        loss = crit(teacher, student, teacher_temp=0.07)
        loss.backward()
        out[f"dino/teacher{call}"] = _np(torch.stack(teacher))
        out[f"dino/student{call}"] = _np(torch.stack(student))
        out[f"dino/loss{call}"] = _np(loss)
        out[f"dino/grad_student{call}"] = np.stack([_np(s.grad) for s in student])
        out[f"dino/center{call + 1}"] = _np(crit.center.reshape(32))
    sched = DINOLoss(
        output_dim=4, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5
    )
    out["dino_schedule/epochs"] = np.array(5)
    out["dino_schedule/temps"] = np.array(
        [float(sched.teacher_temp_schedule[e]) if e < 5 else sched.teacher_temp for e in range(7)]
    )

    # DINO projection head: weights, an input, the output (training mode)
    for key, bn in (("dino_head", False), ("dino_head_bn", True)):
        torch.manual_seed(7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
            head = DINOProjectionHead(12, 16, 8, 10, batch_norm=bn).double().train()
        x = torch.randn(6, 12, generator=g, dtype=torch.float64)
        with torch.no_grad():
            y = head(x)
        out |= {f"{key}/{name}": _np(t) for name, t in head.state_dict().items()}
        out |= {f"{key}/x": _np(x), f"{key}/y": _np(y)}

    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {len(out)} arrays, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
