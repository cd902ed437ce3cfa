"""MAE: masked autoencoder for vision transformers.

He, Chen, Xie, Li, Dollár, Girshick. "Masked Autoencoders Are Scalable Vision Learners".
CVPR 2022. https://arxiv.org/abs/2111.06377
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from pyxfer.objectives.base import Objective

from ..backbones.vit import Block


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, flattened pixel-major.

    Patches are in raster order of the (H/p, W/p) grid (the order of the ViT's tokens); each
    patch is flattened as (row, column, channel), i.e. ``p * p * C`` values.

    Args:
        images: (N, C, H, W), H and W multiples of ``patch_size``.
        patch_size: patch side ``p``.

    Returns:
        (N, L, p * p * C) with ``L = H/p * W/p``.
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), received {tuple(images.shape)}")
    n, c, h, w = images.shape
    p = int(patch_size)
    if p < 1 or h % p or w % p:
        raise ValueError(
            f"patch_size: expected a positive divisor of the image sides {h}x{w}, received {p}"
        )
    x = images.reshape(n, c, h // p, p, w // p, p)  # (N, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (N, gh, gw, p, p, C)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(
    patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`.

    Args:
        patches: (N, L, p * p * C) with ``L = gh * gw``.
        patch_size: patch side ``p``.
        grid: (gh, gw) patches per column and per row.
        channels: ``C``.

    Returns:
        (N, C, gh * p, gw * p).
    """
    n, length, dim = patches.shape
    p, (gh, gw), c = int(patch_size), grid, int(channels)
    if length != gh * gw or dim != p * p * c:
        raise ValueError(
            f"patches: expected (N, {gh * gw}, {p * p * c}) for grid {grid}, patch {p} and "
            f"{c} channels, received {tuple(patches.shape)}"
        )
    x = patches.reshape(n, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (N, C, gh, p, gw, p)
    return x.reshape(n, c, gh * p, gw * p)


def random_masking(
    batch: int, length: int, mask_ratio: float, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by sorting uniform noise (the paper's shuffle).

    ``int(length * (1 - mask_ratio))`` patches stay visible in every sample. The noise comes
    from torch's global generator, so ``torch.manual_seed`` fixes the masks.

    Args:
        batch: ``N``.
        length: patches per image ``L``.
        mask_ratio: fraction of the patches to mask, in [0, 1).
        device: device of the returned tensors.

    Returns:
        ``ids_keep`` (N, K) indices of the visible patches (in shuffled order), ``mask``
        (N, L) float with 1 on masked and 0 on visible patches (in patch order) and
        ``ids_restore`` (N, L), the inverse permutation: position of each patch in the
        shuffled order.
    """
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(batch, length, device=device)  # (N, L)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the first ``keep`` stay visible
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, length, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to patch order
    return ids_shuffle[:, :keep], mask, ids_restore


def masked_patch_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Mean squared error over the masked patches only.

    With ``norm_pix_loss`` each target patch is standardised by its own mean and (unbiased,
    as ``Tensor.var``) variance over its ``p * p * C`` values, ``(t - mean) / sqrt(var + eps)``,
    as in the paper's default.

    Args:
        pred: (N, L, P) predicted patches.
        target: (N, L, P) image patches (from :func:`patchify`).
        mask: (N, L), 1 on masked patches.
        norm_pix_loss: normalise each target patch.
        eps: added to the variance.

    Returns:
        () the mean over masked patches of the per-patch mean squared error.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(
            f"pred, target, mask: expected (N, L, P), (N, L, P), (N, L), received "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
        )
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)  # (N, L)
    return (per_patch * mask).sum() / mask.sum()


def sincos_pos_embed(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (1, gh * gw, dim), raster order.

    Half of the channels encode the row, half the column; each half is
    ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim / 4))``.
    """
    if dim % 4:
        raise ValueError(f"decoder_dim: expected a multiple of 4, received {dim}")
    gh, gw = grid
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # (L, dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (L, dim/2)

    return torch.cat([embed(rows), embed(cols)], dim=1).float().unsqueeze(0)


class MAE(Objective):
    """MAE (He et al. 2022): reconstruct masked patches from the visible ones.

    A random ``mask_ratio`` (75 %) of each image's patches is dropped; the backbone's patch
    embedding, position embedding and transformer blocks encode the visible patches only
    (:meth:`~pyxfer.plugins.backbones.vit.VisionTransformer.embed_patches` /
    ``encode_tokens``); a lightweight decoder takes the encoded tokens plus a shared, learned
    mask token at every masked position, adds a fixed sine-cosine position embedding, runs
    ``decoder_depth`` transformer blocks and predicts each patch's pixels linearly. The loss
    is the mean squared error on the masked patches only, against per-patch normalised pixels
    (``norm_pix_loss``, the paper's default). The representation is the backbone's pooled
    features of the whole (unmasked) image, as usual.

    The paper's decoder for ImageNet is 8 blocks of width 512; its ablation (Table 1) shows a
    single block suffices for fine-tuning. The defaults here (2 blocks of width 128) suit the
    small ViTs this library trains on 32 px images; pass ``decoder_dim=512, decoder_depth=8,
    decoder_heads=16`` for the paper's setting.

    Requires a vision transformer backbone (``requires = "vit"``): one with ``patch_embed``,
    ``embed_patches`` and ``encode_tokens``, such as ``vit_tiny``.

    Args:
        backbone: a :class:`~pyxfer.plugins.backbones.vit.VisionTransformer`.
        mask_ratio: fraction of patches masked, in [0, 1).
        norm_pix_loss: normalise each target patch by its mean and standard deviation.
        decoder_dim: decoder token width (a multiple of ``decoder_heads`` and of 4).
        decoder_depth: decoder transformer blocks.
        decoder_heads: decoder attention heads.
        channels: image channels (default: ``backbone.input_spec.channels``).

    Examples:
        >>> obj = create_objective("mae", create_backbone("vit_tiny"))  # doctest: +SKIP
        >>> out = obj([images])  # one (N, 3, 32, 32) view
        >>> out["loss"].backward()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "mae"
    num_views: ClassVar[int] = 1
    requires: ClassVar[str | None] = "vit"

    def __init__(
        self,
        backbone: nn.Module,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        channels: int | None = None,
    ) -> None:
        missing = [
            name
            for name in ("patch_embed", "embed_patches", "encode_tokens", "num_features")
            if not hasattr(backbone, name)
        ]
        if missing:
            raise ValueError(
                f"backbone: MAE needs a vision transformer (with patch_embed, embed_patches and "
                f"encode_tokens, e.g. vit_tiny), received {type(backbone).__name__} without "
                f"{', '.join(missing)}"
            )
        super().__init__(backbone)
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"mask_ratio: expected a fraction in [0, 1), received {mask_ratio}")
        for name, value in (
            ("decoder_dim", decoder_dim),
            ("decoder_depth", decoder_depth),
            ("decoder_heads", decoder_heads),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, received {value!r}")
        if decoder_dim % decoder_heads or decoder_dim % 4:
            raise ValueError(
                f"decoder_dim: expected a multiple of 4 and of decoder_heads={decoder_heads}, "
                f"received {decoder_dim}"
            )
        if channels is None:
            spec = getattr(backbone, "input_spec", None)
            channels = int(spec.channels) if spec is not None else 3
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.channels = int(channels)
        self.patch_size = int(backbone.patch_embed.patch_size)
        self.decoder_dim = int(decoder_dim)
        dim = int(backbone.num_features)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, 4.0) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * self.channels)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def decode(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Encoded visible tokens -> predicted pixels of every patch.

        Args:
            latent: (N, 1 + K, D) class token and the K visible tokens (shuffled order).
            ids_restore: (N, L) from :func:`random_masking`.
            grid: (gh, gw) patch grid, ``gh * gw = L``.

        Returns:
            (N, L, p * p * C) in patch order.
        """
        x = self.decoder_embed(latent)  # (N, 1 + K, Dd)
        n, length = ids_restore.shape
        masks = self.mask_token.expand(n, length + 1 - x.shape[1], -1)  # (N, L - K, Dd)
        tokens = torch.cat([x[:, 1:], masks], dim=1)  # (N, L, Dd), shuffled order
        index = ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2])
        tokens = torch.gather(tokens, 1, index)  # patch order
        pos = sincos_pos_embed(self.decoder_dim, grid).to(tokens)  # (1, L, Dd)
        x = torch.cat([x[:, :1], tokens + pos], dim=1)  # class token: no position
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (N, L, p * p * C)

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask, encode and decode a batch.

        Args:
            images: (N, C, H, W) normalised images.

        Returns:
            ``pred`` (N, L, p * p * C) predicted patches (normalised per patch when
            ``norm_pix_loss``), ``target`` (N, L, p * p * C) the image's patches and ``mask``
            (N, L), 1 on masked patches.
        """
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"images: expected (N, {self.channels}, H, W) for MAE, received "
                f"{tuple(images.shape)}"
            )
        p = self.patch_size
        grid = (int(images.shape[2]) // p, int(images.shape[3]) // p)
        tokens = self.backbone.embed_patches(images)  # (N, L, D)
        n, length, dim = tokens.shape
        ids_keep, mask, ids_restore = random_masking(n, length, self.mask_ratio, images.device)
        visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        latent = self.backbone.encode_tokens(visible)  # (N, 1 + K, D)
        pred = self.decode(latent, ids_restore, grid)
        return pred, patchify(images, p), mask.to(pred.dtype)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: one (N, C, H, W) view.

        Returns:
            ``loss`` (the masked-patch reconstruction MSE).
        """
        images = self.check_views(views)[0]
        pred, target, mask = self.reconstruct(images)
        return {"loss": masked_patch_loss(pred, target, mask, self.norm_pix_loss)}
