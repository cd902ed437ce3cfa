"""Train a backbone on the seen classes so that its features encode the class descriptions.

A backbone trained only to tell the seen classes apart collapses its features onto those
classes: whatever does not separate them (an attribute that only unseen classes vary in, say)
is thrown away, and a zero-shot method fitted on such features has little to transfer. The
standard end-to-end recipe of attribute-based zero-shot learning (the deep variants of DAP and
ALE, e.g. Akata et al., TPAMI 2016; Xian et al., TPAMI 2019) adds *attribute supervision*: each
training image's target is its class's description row, and the backbone learns to predict
every attribute (a multi-label loss) beside, or instead of, its class.

:class:`AttributeBackbone` does that: a linear attribute head (D -> A) and optionally a linear
class head (D -> seen classes) on top of the backbone's features, loss

    attribute_weight * L_attr(head_a(f(x)), s_y) + class_weight * CE(head_c(f(x)), y)

with ``L_attr`` the binary cross-entropy with soft targets when every table value lies in
[0, 1] (graded attributes such as 0.5 included), the mean squared error otherwise. Training
images may be shifted at random by up to ``max_shift`` pixels (each image its own shift), a
cheap augmentation that keeps small backbones from memorising the seen images. Only images of
seen classes and the rows of seen classes are used; unseen rows in the table are ignored.

After ``fit``, :meth:`AttributeBackbone.transform` gives the fine-tuned features (N, D) for any
zero-shot method of this package, and :meth:`AttributeBackbone.predict_attributes` the
attribute head's predictions (N, A).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from pyxfer._checks import check_class_ids
from pyxfer.zeroshot._base import check_class_table, rows_for

log = logging.getLogger("pyxfer.zeroshot")


def random_shift(x: Any, max_shift: int, generator: Any) -> Any:
    """Images (N, C, H, W) each translated by a random integer shift in [-max_shift, max_shift].

    Pixels shifted in from outside the image take the value of the image's minimum (the
    background of normalised digit images), so no artificial edge appears.
    """
    import torch

    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = max_shift
    fill = x.amin(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    big = fill.expand(n, x.shape[1], h + 2 * pad, w + 2 * pad).clone()
    big[:, :, pad : pad + h, pad : pad + w] = x
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)  # (N,)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (N, H)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # (N, W)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = big.gather(2, idx_r)  # (N, C, H, W + 2 pad)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)  # (N, C, H, W)


class AttributeBackbone:
    """Fine-tune a backbone on seen classes with attribute (and class) supervision.

    Args:
        backbone: an ``nn.Module`` mapping images (N, ...) to features (N, D). It is copied;
            the caller's module is never trained.
        attribute_weight: weight of the attribute loss (>= 0).
        class_weight: weight of the seen-class cross-entropy (>= 0; 0 trains on attributes
            alone). At least one weight must be positive.
        epochs: passes over the training images (ignored when ``max_steps`` is given).
        max_steps: number of optimisation steps (batches), passing over the images as many
            times as needed; None trains for ``epochs`` passes.
        lr: Adam learning rate (backbone and heads).
        weight_decay: Adam weight decay.
        batch_size: images per step.
        max_shift: largest random translation in pixels applied to training images (0: none).
        seed: seeds the heads' initialisation, the batch order and the shifts.
        device: torch device.

    Attributes (after fit):
        backbone_: the fine-tuned copy of ``backbone`` (in eval mode).
        attribute_head_: ``nn.Linear(D, A)``; class_head_: ``nn.Linear(D, Z)`` or None.
        seen_classes_: (Z,) the classes trained on. loss_history_: mean loss per epoch.
        steps_: optimisation steps taken.

    Examples:
        >>> import numpy as np, torch
        >>> S = np.eye(4)  # class c has attribute c only
        >>> y = np.repeat(np.arange(3), 20)  # class 3 is unseen
        >>> X = torch.as_tensor(S[y], dtype=torch.float32)[:, None, :, None]  # (60, 1, 4, 1)
        >>> net = AttributeBackbone(torch.nn.Flatten(), epochs=5, max_shift=0)
        >>> net.fit(X, y, S).predict_attributes(X[:1]).shape
        (1, 4)
    """

    def __init__(
        self,
        backbone: Any,
        *,
        attribute_weight: float = 1.0,
        class_weight: float = 1.0,
        epochs: int = 5,
        max_steps: int | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_shift: int = 2,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if not callable(backbone):
            raise ValueError(
                "backbone: expected an nn.Module mapping images to features, "
                f"received {type(backbone).__name__}"
            )
        for name, value in (("attribute_weight", attribute_weight), ("class_weight", class_weight)):
            if not value >= 0:
                raise ValueError(f"{name}: expected a number >= 0, received {value}")
        if attribute_weight == 0 and class_weight == 0:
            raise ValueError("attribute_weight: expected > 0 when class_weight is 0, received 0")
        if epochs < 1:
            raise ValueError(f"epochs: expected a positive integer, received {epochs}")
        if max_steps is not None and (isinstance(max_steps, bool) or max_steps < 1):
            raise ValueError(
                f"max_steps: expected a positive integer or None, received {max_steps}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, received {batch_size}")
        if max_shift < 0:
            raise ValueError(f"max_shift: expected an integer >= 0, received {max_shift}")
        self.backbone = backbone
        self.attribute_weight = attribute_weight
        self.class_weight = class_weight
        self.epochs = epochs
        self.max_steps = max_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_shift = max_shift
        self.seed = seed
        self.device = device

    @staticmethod
    def _images(X: Any) -> Any:
        import torch

        x = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        if x.ndim != 4 or x.shape[0] == 0:
            raise ValueError(
                f"X: expected a non-empty batch of images (N, C, H, W), received shape "
                f"{tuple(x.shape)}"
            )
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("X: expected finite values, received NaN/inf")
        return x

    def fit(
        self, X: Any, y: Any, class_descriptions: Any, class_ids: Any = None
    ) -> AttributeBackbone:
        """Train on images of seen classes.

        Args:
            X: (N, C, H, W) training images (seen classes only).
            y: (N,) class id of each image; every id must have a row in the table.
            class_descriptions: (C, A) description rows (or ClassDescriptions); rows of
                classes without images are ignored.
            class_ids: (C,) id of each row; default ``0..C-1``.

        Returns:
            self
        """
        import torch

        x = self._images(X)
        y = check_class_ids(y, x.shape[0], "y")
        S, ids = check_class_table(class_descriptions, class_ids)
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(f"y: expected images of at least 2 classes, received {classes}")
        targets = torch.as_tensor(S[rows_for(ids, y)], dtype=torch.float32)  # (N, A)
        self.bce_ = bool(((S >= 0) & (S <= 1)).all())
        labels = torch.as_tensor(np.searchsorted(classes, y))  # (N,)
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(self.seed)
            self._train(x, targets, labels, classes, S.shape[1])
        return self

    def _train(self, x: Any, targets: Any, labels: Any, classes: np.ndarray, num_attr: int) -> None:
        import torch
        from torch import nn

        gen = torch.Generator().manual_seed(self.seed)
        net = copy.deepcopy(self.backbone).to(self.device)
        net.eval()
        with torch.no_grad():
            dim = int(net(x[:1].to(self.device)).reshape(1, -1).shape[1])
        head_a = nn.Linear(dim, num_attr).to(self.device)
        head_c = nn.Linear(dim, classes.size).to(self.device) if self.class_weight > 0 else None
        params = list(net.parameters()) + list(head_a.parameters())
        if head_c is not None:
            params += list(head_c.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        attr_loss = nn.functional.binary_cross_entropy_with_logits if self.bce_ else None
        self.loss_history_: list[float] = []
        net.train()
        steps_per_epoch = -(-x.shape[0] // self.batch_size)
        epochs = self.epochs if self.max_steps is None else -(-self.max_steps // steps_per_epoch)
        steps = 0
        for _ in range(epochs):
            total, count = 0.0, 0
            for idx in torch.randperm(x.shape[0], generator=gen).split(self.batch_size):
                if self.max_steps is not None and steps >= self.max_steps:
                    break
                steps += 1
                xb = random_shift(x[idx], self.max_shift, gen).to(self.device)
                feats = net(xb).flatten(1)  # (B, D)
                out = head_a(feats)  # (B, A)
                tb = targets[idx].to(self.device)
                if attr_loss is not None:
                    loss = self.attribute_weight * attr_loss(out, tb)
                else:
                    loss = self.attribute_weight * nn.functional.mse_loss(out, tb)
                if head_c is not None:
                    ce = nn.functional.cross_entropy(head_c(feats), labels[idx].to(self.device))
                    loss = loss + self.class_weight * ce
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()
            self.loss_history_.append(total / count)
        log.info("attribute backbone: loss per epoch %s", np.round(self.loss_history_, 4))
        self.backbone_ = net.eval()
        self.attribute_head_ = head_a.eval()
        self.class_head_ = head_c.eval() if head_c is not None else None
        self.seen_classes_ = classes
        self.num_attributes_ = num_attr
        self.steps_ = steps

    def _check_fitted(self) -> None:
        if not hasattr(self, "backbone_"):
            raise RuntimeError("AttributeBackbone is not fitted; call fit first")

    def _batched(self, X: Any, fn: Any, batch_size: int = 1024) -> np.ndarray:
        import torch

        self._check_fitted()
        x = self._images(X)
        out = []
        with torch.no_grad():
            for b in x.split(batch_size):
                out.append(fn(self.backbone_(b.to(self.device)).flatten(1)).double().cpu())
        return torch.cat(out).numpy()

    def transform(self, X: Any) -> np.ndarray:
        """Fine-tuned features (N, D) of images X (N, C, H, W)."""
        return self._batched(X, lambda f: f)

    def predict_attributes(self, X: Any) -> np.ndarray:
        """Attribute predictions (N, A): probabilities with the BCE loss, values otherwise."""
        self._check_fitted()
        if self.bce_:
            return self._batched(X, lambda f: self.attribute_head_(f).sigmoid())
        return self._batched(X, self.attribute_head_)
