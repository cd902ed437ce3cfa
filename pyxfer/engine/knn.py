"""Online kNN monitor: top-1 of a weighted kNN vote on frozen features (Wu et al. 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyxfer.engine.loader import FusedLoader

if TYPE_CHECKING:
    from pyxfer.backbone import Backbone


def labelled_only(store: Any) -> Any:
    """The labelled images (label >= 0) of an ``ImageStore``."""
    return store.subset(np.flatnonzero(np.asarray(store.labels) >= 0))


class KNNMonitor:
    """Classify held-out ``queries`` by their nearest ``bank`` images in feature space.

    Images are eval-preprocessed (resize, centre crop, normalise) by a :class:`FusedLoader`
    with ``views=None``; features are the backbone's pooled features, L2-normalised; the vote
    is :func:`pyxfer.ops.knn_classify`.

    Args:
        bank: labelled ``ImageStore`` whose features vote.
        queries: labelled ``ImageStore`` to classify.
        k: neighbours (capped at the bank size).
        temperature: vote temperature.
        max_bank: at most this many bank images (a subset drawn with ``seed``).
        batch_size: images per forward pass.
        threads: preprocessing threads.
        seed: seed of the bank subset.
    """

    def __init__(
        self,
        bank: Any,
        queries: Any,
        *,
        k: int = 20,
        temperature: float = 0.07,
        max_bank: int = 10000,
        batch_size: int = 256,
        threads: int = 0,
        seed: int = 0,
    ) -> None:
        bank, queries = labelled_only(bank), labelled_only(queries)
        if len(bank) == 0 or len(queries) == 0:
            raise ValueError(
                f"knn: expected labelled bank and query images, received {len(bank)} and "
                f"{len(queries)} labelled images"
            )
        if len(bank) > max_bank:
            pick = np.random.default_rng(seed).choice(len(bank), max_bank, replace=False)
            bank = bank.subset(np.sort(pick))
        self.bank, self.queries = bank, queries
        self.k, self.temperature = k, temperature
        self.batch_size, self.threads = batch_size, threads
        self.num_classes = max(bank.num_classes, queries.num_classes)

    @torch.no_grad()
    def features(self, backbone: Backbone, store: Any, device: torch.device) -> torch.Tensor:
        """Pooled features (N, D) float32 on the CPU, in store order."""
        loader = FusedLoader(
            store,
            self.batch_size,
            None,
            input_spec=backbone.input_spec,
            shuffle=False,
            drop_last=False,
            rank=0,
            world_size=1,
            threads=self.threads,
        )
        out = []
        with loader:
            for batch in loader:
                x = batch.views[0].to(device)
                f = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
                out.append(f.float().cpu())
        return torch.cat(out)[: len(store)]

    def evaluate(self, backbone: Backbone) -> float:
        """kNN top-1 accuracy (fraction) of ``backbone`` (evaluated in eval mode, restored)."""
        from pyxfer.ops.knn import knn_classify

        was_training = backbone.training
        device = next(backbone.parameters()).device
        backbone.eval()
        try:
            fb = self.features(backbone, self.bank, device)
            fq = self.features(backbone, self.queries, device)
        finally:
            backbone.train(was_training)
        _, pred = knn_classify(
            fq,
            fb,
            torch.from_numpy(np.asarray(self.bank.labels)),
            k=min(self.k, len(self.bank)),
            temperature=self.temperature,
            num_classes=self.num_classes,
            normalize=True,
            return_predictions=True,
        )
        truth = torch.from_numpy(np.asarray(self.queries.labels))
        return float((pred == truth).float().mean())
