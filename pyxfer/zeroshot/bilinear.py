"""Bilinear compatibility learned with a ranking loss (ALE / SJE; Akata et al.).

``F(x, c) = theta(x)^T W phi(c)``: theta(x) are image features (frozen, standardised), or the
output of a backbone being fine-tuned; phi(c) is the class's description row (L2-normalised by
default); W (D, A) is learned on the seen classes with

- ``loss="sje"`` (Akata et al., "Evaluation of Output Embeddings for Fine-Grained Image
  Classification", CVPR 2015): the structured hinge ``max_c [Delta(y, c) + F(x, c)] - F(x, y)``
  with ``Delta = margin`` for c != y and 0 for c = y;
- ``loss="ale"`` (Akata et al., "Label-Embedding for Image Classification", TPAMI 2016): the
  rank-weighted hinge ``(beta_r / r) sum_c [margin + F(x, c) - F(x, y)]_+`` over the r
  violating classes, ``beta_r = sum_{k<=r} 1/k`` (a weighted approximate ranking).

The number of epochs is chosen by early stopping on validation *classes* split off the seen
ones (zero-shot accuracy among them), then the model is refitted on all seen classes for that
many epochs. Training is seeded (initialisation and batch order).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Self

import numpy as np

from pyxfer.evaluate.metrics import mean_per_class_accuracy
from pyxfer.zeroshot._base import ZeroShotClassifier, class_folds, rows_for

log = logging.getLogger("pyxfer.zeroshot")


class BilinearZSL(ZeroShotClassifier):
    """Trainable bilinear compatibility ``theta(x)^T W phi(c)``.

    Args:
        loss: ``"sje"`` or ``"ale"`` (see the module docstring).
        margin: Delta of the hinge.
        lr: Adam learning rate of W.
        weight_decay: L2 penalty on W (Adam's weight decay).
        epochs: fixed number of epochs; None chooses it by early stopping on validation classes.
        max_epochs: upper bound of the early-stopping run.
        patience: epochs without validation improvement before stopping.
        batch_size: images per step.
        normalize_descriptions: L2-normalise description rows before use.
        backbone: optional ``nn.Module`` mapping images (N, ...) to features (N, D); when given,
            ``X`` passed to fit/predict are images and the backbone is fine-tuned with
            ``backbone_lr`` (its initial weights are kept so that validation runs restart
            from them).
        backbone_lr: learning rate of the backbone's parameters.
        seed: seed of the initialisation and of the batch order.
        device: torch device for training and scoring.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> S = rng.normal(size=(8, 5)); A = rng.normal(size=(5, 12))
        >>> y = np.repeat(np.arange(6), 30); X = S[y] @ A + 0.1 * rng.normal(size=(180, 12))
        >>> model = BilinearZSL(epochs=30, seed=0).fit(X, y, S)
        >>> model.predict(S[6:] @ A, S[6:], class_ids=[6, 7]).tolist()
        [6, 7]
    """

    def __init__(
        self,
        loss: str = "sje",
        *,
        margin: float = 1.0,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        epochs: int | None = None,
        max_epochs: int = 50,
        patience: int = 5,
        batch_size: int = 128,
        normalize_descriptions: bool = True,
        backbone: Any = None,
        backbone_lr: float = 1e-4,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if loss not in ("sje", "ale"):
            raise ValueError(f"loss: expected 'sje' or 'ale', received {loss!r}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs: expected a positive integer or None, received {epochs}")
        if max_epochs < 1:
            raise ValueError(f"max_epochs: expected a positive integer, received {max_epochs}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, received {batch_size}")
        if backbone is not None and not callable(backbone):
            raise ValueError(
                "backbone: expected an nn.Module mapping images to features, "
                f"received {type(backbone).__name__}"
            )
        self.loss = loss
        self.margin = margin
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.normalize_descriptions = normalize_descriptions
        self.backbone = backbone
        self.backbone_lr = backbone_lr
        self.seed = seed
        self.device = device

    # -- inputs ---------------------------------------------------------------------------------
    def _check_X(self, X: Any) -> Any:
        if self.backbone is None:
            return super()._check_X(X)
        import torch

        x = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(
                f"X: expected a batch of images (N, ...), received shape {tuple(x.shape)}"
            )
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("X: expected finite values, received NaN/inf")
        return x

    def _phi(self, S: np.ndarray) -> np.ndarray:
        if not self.normalize_descriptions:
            return S
        return S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-12)

    # -- epochs by early stopping on validation classes ------------------------------------------
    def _select_hyperparameters(
        self, X: Any, y: np.ndarray, S: np.ndarray, ids: np.ndarray
    ) -> None:
        self.cv_results_ = []
        if self.backbone is not None:
            self.backbone_init_state_ = copy.deepcopy(self.backbone.state_dict())
        if self.epochs is not None:
            self.epochs_ = self.epochs
            return
        val = class_folds(np.unique(y), 1, self.seed, "epochs")[0]
        fit_mask = ~np.isin(y, val)
        clone = self._clone_with()
        rows = rows_for(ids, val)
        val_idx = np.nonzero(~fit_mask)[0]
        history = clone._train(
            X[np.nonzero(fit_mask)[0]],
            y[fit_mask],
            S,
            ids,
            self.max_epochs,
            val=(X[val_idx], y[val_idx], S[rows], ids[rows]),
        )
        self.cv_results_ = [{"epoch": i + 1, "val_accuracy": a} for i, a in enumerate(history)]
        self.epochs_ = int(np.argmax(history)) + 1
        log.info(
            "bilinear: %d epochs chosen on validation classes %s (accuracy %.3f)",
            self.epochs_,
            val.tolist(),
            max(history),
        )

    def _clone_with(self, **params: Any) -> Self:
        clone = super()._clone_with(**params)
        if self.backbone is not None:  # never share (and train) the caller's module
            clone.backbone = copy.deepcopy(self.backbone)
            state = getattr(self, "backbone_init_state_", None)
            if state is not None:
                clone.backbone.load_state_dict(state)
        return clone

    # -- training -------------------------------------------------------------------------------
    def _fit(self, X: Any, y: np.ndarray, S: np.ndarray, ids: np.ndarray) -> None:
        self._train(X, y, S, ids, self.epochs_)

    def _features(self, X: Any, train: bool = False) -> Any:
        import torch

        if self.backbone is None:
            z = (X - self.mean_) / self.scale_
            return torch.as_tensor(z, dtype=torch.float32, device=self.device)
        self.backbone.train(train)
        return self.backbone(X.to(self.device))

    def _train(
        self,
        X: Any,
        y: np.ndarray,
        S: np.ndarray,
        ids: np.ndarray,
        epochs: int,
        val: tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> list[float]:
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        classes = np.unique(y)
        phi = torch.as_tensor(
            self._phi(S[rows_for(ids, classes)]), dtype=torch.float32, device=self.device
        )  # (Z, A)
        target = torch.as_tensor(np.searchsorted(classes, y), device=self.device)  # (N,)
        if self.backbone is None:
            self.mean_ = X.mean(axis=0)
            self.scale_ = X.std(axis=0) + 1e-8
            dim = X.shape[1]
        else:
            self.backbone.to(self.device)
            with torch.no_grad():
                self.backbone.eval()
                dim = int(self.backbone(X[:1].to(self.device)).shape[1])
        W = torch.randn(dim, S.shape[1], generator=gen) * (1.0 / np.sqrt(dim))
        W = W.to(self.device).requires_grad_(True)
        groups = [{"params": [W], "lr": self.lr}]
        if self.backbone is not None:
            groups.append({"params": list(self.backbone.parameters()), "lr": self.backbone_lr})
        opt = torch.optim.Adam(groups, weight_decay=self.weight_decay)
        history: list[float] = []
        best, stale = -1.0, 0
        n = y.shape[0]
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=gen).split(self.batch_size):
                theta = self._features(X[idx.numpy()], train=True)  # (B, D)
                scores = theta @ W @ phi.T  # (B, Z)
                loss = self._ranking_loss(scores, target[idx.to(self.device)])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.W_ = W.detach().cpu().numpy().astype(np.float64)
            if val is not None:
                Xv, yv, Sv, idv = val
                pred = idv[np.argmax(self._scores(Xv, Sv), axis=1)]
                acc = mean_per_class_accuracy(yv, pred)
                history.append(acc)
                if acc > best + 1e-9:
                    best, stale = acc, 0
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        return history

    def _ranking_loss(self, scores: Any, target: Any) -> Any:
        import torch

        true = scores.gather(1, target[:, None])  # (B, 1)
        delta = torch.full_like(scores, self.margin).scatter_(1, target[:, None], 0.0)
        if self.loss == "sje":
            return ((scores + delta).max(dim=1).values - true[:, 0]).mean()
        viol = torch.relu(delta + scores - true)  # (B, Z); zero at the true class
        r = (viol > 0).sum(dim=1)  # (B,) number of violating classes
        harmonic = torch.cumsum(1.0 / torch.arange(1, scores.shape[1] + 1, device=scores.device), 0)
        beta = torch.where(r > 0, harmonic[(r - 1).clamp(min=0)] / r.clamp(min=1), 0.0)
        return (beta * viol.sum(dim=1)).mean()

    def _scores(self, X: Any, S: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], 1024):
                theta = self._features(X[start : start + 1024])
                out.append(theta.double().cpu().numpy())
        feats = np.concatenate(out)  # (N, D)
        return feats @ self.W_ @ self._phi(S).T  # (N, C)
