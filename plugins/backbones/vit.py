"""Small vision transformers (pre-norm, class token, learned position embedding).

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021. Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv``, ``norm``, ``head``). Attention uses
``torch.nn.functional.scaled_dot_product_attention``; the forward pass has no data-dependent
control flow (only shape checks), so it exports to ONNX with a dynamic batch.

Examples:
    >>> from pyxfer import create_backbone
    >>> vit = create_backbone("vit_tiny")  # patch 4, 32 px, 6 blocks of width 192
    >>> vit.forward_features(torch.zeros(2, 3, 32, 32)).shape  # tokens
    torch.Size([2, 65, 192])
    >>> vit(torch.zeros(2, 3, 32, 32)).shape  # class token
    torch.Size([2, 192])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_choice, check_int, check_number
from pyxfer.backbone import Backbone, imagenet_spec

from ._common import check_in_chans


class Attention(nn.Module):
    """Multi-head self-attention over tokens (N, T, D)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, t, d = x.shape
        qkv = self.qkv(x).reshape(-1, t, 3, self.num_heads, self.head_dim)  # (N, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (N, nh, T, hs)
        x = F.scaled_dot_product_attention(q, k, v)  # (N, nh, T, hs)
        return self.proj(x.transpose(1, 2).reshape(-1, t, d))  # (N, T, D)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: (N, C, H, W) -> (N, H/p * W/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, L, D)


class VisionTransformer(Backbone):
    """A ViT backbone.

    Args:
        img_size: training input side; sets the position-embedding grid. Other sides that are
            multiples of ``patch_size`` work too: the grid is interpolated (bicubic).
        patch_size: side of the square patches.
        depth: number of transformer blocks.
        embed_dim: token width (= ``num_features``).
        num_heads: attention heads; must divide ``embed_dim``.
        mlp_ratio: MLP hidden width / ``embed_dim``.
        in_chans: 1 or 3.
        global_pool: ``"token"`` (class token, default) or ``"avg"`` (mean of patch tokens).
        num_classes: classes of a linear head; 0 (default) for none.

    Shapes:
        forward_features: (N, in_chans, H, W) -> tokens (N, 1 + H/p * W/p, embed_dim), class
        token first, after the final LayerNorm. ``pool``: tokens -> (N, embed_dim).
    """

    def __init__(
        self,
        *,
        img_size: int = 32,
        patch_size: int = 4,
        depth: int = 6,
        embed_dim: int = 192,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        global_pool: str = "token",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("img_size", img_size),
            ("patch_size", patch_size),
            ("depth", depth),
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
        ):
            check_int(name, value, 1)
        check_number("mlp_ratio", mlp_ratio, low_open=True)
        in_chans = check_in_chans(in_chans)
        self.global_pool = check_choice("global_pool", global_pool, ("token", "avg"))
        if img_size % patch_size:
            raise ValueError(
                f"img_size: expected a multiple of patch_size={patch_size}, received {img_size}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim={embed_dim}, received {num_heads}"
            )
        self.num_features = embed_dim
        self.input_spec = imagenet_spec(in_chans, img_size, min_size=patch_size)
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def group_prefixes(self) -> list[tuple[str, tuple[str, ...]]]:
        stem = ("stem", ("patch_embed", "cls_token", "pos_embed"))
        blocks = [(f"blocks.{i}", (f"blocks.{i}",)) for i in range(len(self.blocks))]
        return [stem, *blocks, ("norm", ("norm",))]

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding (1, 1 + gh * gw, D), interpolated when the grid differs."""
        if gh == self.grid and gw == self.grid:
            return self.pos_embed
        d = self.num_features
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, d)  # (1, L, D)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> patch tokens (N, L, D) with their position embedding added.

        The first half of :meth:`forward_features`, exposed so that objectives can drop tokens
        before the transformer (MAE encodes only the visible patches). Tokens are in raster
        order of the (H/p, W/p) patch grid.
        """
        h, w = x.shape[-2:]
        p = self.patch_embed.patch_size
        if h % p or w % p:
            raise ValueError(
                f"x: expected height and width divisible by patch_size={p}, received {h}x{w}"
            )
        pos = self._pos_embed(int(h) // p, int(w) // p)  # (1, 1 + L, D)
        return self.patch_embed(x) + pos[:, 1:]  # (N, L, D)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, T, D) from :meth:`embed_patches` (any subset, any T) -> (N, 1 + T, D).

        Prepends the class token (with its position embedding), runs the transformer blocks
        and the final LayerNorm: the second half of :meth:`forward_features`.
        """
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)  # (N, 1 + T, D)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> tokens (N, 1 + L, D), class token first."""
        return self.encode_tokens(self.embed_patches(x))  # (N, 1 + L, D)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Tokens (N, 1 + L, D) -> (N, D): class token, or mean of the patch tokens."""
        if self.global_pool == "avg":
            return features[:, 1:].mean(dim=1)
        return features[:, 0]


def vit_tiny(**kwargs: object) -> VisionTransformer:
    """ViT-Tiny for 32 px inputs: patch 4, depth 6, width 192, 3 heads."""
    cfg: dict[str, object] = dict(img_size=32, patch_size=4, depth=6, embed_dim=192, num_heads=3)
    return VisionTransformer(**{**cfg, **kwargs})  # type: ignore[arg-type]


def vit_small(**kwargs: object) -> VisionTransformer:
    """ViT-S/16 for 224 px inputs: patch 16, depth 12, width 384, 6 heads."""
    cfg: dict[str, object] = dict(img_size=224, patch_size=16, depth=12, embed_dim=384, num_heads=6)
    return VisionTransformer(**{**cfg, **kwargs})  # type: ignore[arg-type]
