"""The module that is exported: input adaptation + backbone + head.

:class:`ExportModule` puts around a backbone what the deployed graph should contain:

- ``input="uint8-nhwc"``: cast, NHWC -> NCHW and ``(x / 255 - mean) / std`` (folded into one
  multiply-add) inside the graph, so the deployed model takes camera-style uint8 images;
- ``head="logits"``: the backbone's classifier output; ``"probs"``: its softmax;
  ``"features"``: the pooled pre-logits features, optionally projected (zero-shot embedding
  space) and L2-normalised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.backbone import Backbone, InputSpec, grid_pool


class ExportModule(nn.Module):
    """Backbone with in-graph input adaptation and an output head, ready for export.

    Args:
        backbone: a pyxfer backbone (``forward_features`` + ``forward_head``), or its
            pure-torch twin.
        spec: the backbone's input spec (mean/std for ``uint8-nhwc``).
        input: ``"float-nchw"`` (normalised float32 (N, C, H, W)) or ``"uint8-nhwc"``
            (raw uint8 (N, H, W, C)).
        head: ``"logits"``, ``"probs"`` or ``"features"``.
        l2_normalize: L2-normalise the features (``head="features"`` only).
        projection_bias: optional (E,) vector added after the projection (an affine map, e.g.
            ESZSL's centring folded in).
        projection: optional (E, D) matrix applied to the features before normalising
            (zero-shot models that score in an embedding space of width E).
        grid: ``head="features"`` only: 1 (default) for the pooled features, G > 1 for the
            last feature map averaged on a G x G grid (:func:`pyxfer.backbone.grid_pool`).

    Shapes:
        forward: (N, C, H, W) float32 or (N, H, W, C) uint8 -> (N, K) logits or
        probabilities, or (N, D) / (N, E) features.
    """

    # the backbone or its twin (a module with the backbone's methods) and the buffers
    backbone: Any
    scale: torch.Tensor
    shift: torch.Tensor
    projection: torch.Tensor | None
    projection_bias: torch.Tensor | None

    def __init__(
        self,
        backbone: nn.Module,
        spec: InputSpec,
        *,
        input: str = "float-nchw",
        head: str = "logits",
        l2_normalize: bool = False,
        projection: torch.Tensor | None = None,
        projection_bias: torch.Tensor | None = None,
        grid: int = 1,
    ) -> None:
        super().__init__()
        self.grid = grid
        self.backbone = backbone
        self.input = input
        self.head = head
        self.l2_normalize = l2_normalize
        std = torch.tensor(spec.std, dtype=torch.float32)
        mean = torch.tensor(spec.mean, dtype=torch.float32)
        # (x / 255 - mean) / std == x * scale + shift
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, -1, 1, 1), persistent=False)
        if projection is not None:
            self.register_buffer("projection", projection.detach().float().clone())
        else:
            self.projection = None
        if projection_bias is not None:
            if projection is None:
                raise ValueError("projection_bias: needs a projection")
            self.register_buffer("projection_bias", projection_bias.detach().float().clone())
        else:
            self.projection_bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input == "uint8-nhwc":
            x = x.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift  # (N, C, H, W)
        if self.head == "features":
            fmap = self.backbone.forward_features(x)
            if self.grid > 1:
                feats = grid_pool(fmap, self.grid)  # (N, D * grid * grid)
            else:
                feats = self.backbone.forward_head(fmap, pre_logits=True)  # (N, D)
            if self.projection is not None:
                feats = feats @ self.projection.t()  # (N, E)
            if self.projection_bias is not None:
                feats = feats + self.projection_bias  # (N, E)
            return F.normalize(feats, dim=1) if self.l2_normalize else feats
        logits = self.backbone(x)  # (N, K)
        return logits.softmax(dim=1) if self.head == "probs" else logits


def export_twin(backbone: Backbone) -> nn.Module:
    """The module to trace: ``backbone.export_module()`` when the backbone defines it.

    A backbone whose forward calls a pyxfer custom kernel (``pyxfer._C``) defines
    ``export_module()`` returning a pure-torch twin with the same parameters and outputs;
    exporting traces the twin, never a result baked into constants.
    """
    make = getattr(backbone, "export_module", None)
    return make() if callable(make) else backbone
