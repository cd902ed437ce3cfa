"""DCGAN: a generator from noise against a discriminator whose trunk is the backbone.

Radford, Metz, Chintala. "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks". ICLR 2016. https://arxiv.org/abs/1511.06434 ; the
adversarial game of Goodfellow et al. "Generative Adversarial Nets". NeurIPS 2014.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ConvDecoder, check_image_shape, image_spec


def _dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: weights N(0, 0.02), BN scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGAN(Objective):
    """DCGAN (Radford et al. 2016) with the backbone as the discriminator's trunk.

    Generator: ``z ~ N(0, I)`` (``latent_dim`` = 100) ->
    :class:`~pyxfer.objectives.heads.ConvDecoder` (transposed convolutions, BN, ReLU) ->
    ``tanh`` -> mapped from [-1, 1] to the backbone's normalised input space with its
    ``mean`` / ``std``. Discriminator: backbone -> linear logit. Losses are the non-saturating
    ones of Goodfellow et al.: ``L_D = BCE(D(x), 1) + BCE(D(G(z)), 0)`` and
    ``L_G = BCE(D(G(z)), 1)``. The learned representation is the discriminator trunk's pooled
    features (:meth:`embed`).

    Training follows the alternating protocol of :class:`~pyxfer.objectives.base.Objective`
    (``players = ("discriminator", "generator")``): per iteration, a discriminator step on
    ``forward(views, player="discriminator")`` (generator run without gradient), then a
    generator step on ``forward(views, player="generator")``, each with its own optimiser over
    ``param_groups()[player]`` and all gradients zeroed before each backward. The paper uses
    Adam with ``lr=2e-4``, ``betas=(0.5, 0.999)`` for both. Without ``player`` (evaluation,
    no gradient) both losses are returned and ``loss`` is their sum.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        latent_dim: noise width.
        channels, image_size, mean, std: the image format (default: ``backbone.input_spec``).
        generator_width: channels of the generator's last stage.

    Examples:
        >>> gan = create_objective("gan", backbone, channels=3, image_size=32)  # doctest: +SKIP
        >>> groups = gan.param_groups()
        >>> opts = {p: torch.optim.Adam(groups[p], 2e-4, betas=(0.5, 0.999)) for p in groups}
        >>> for player in gan.players:
        ...     gan.zero_grad(set_to_none=True)
        ...     gan([images], player=player)["loss"].backward()
        ...     opts[player].step()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "none"
    num_views: ClassVar[int] = 1
    players: ClassVar[tuple[str, ...]] = ("discriminator", "generator")

    def __init__(
        self,
        backbone: nn.Module,
        latent_dim: int = 100,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        generator_width: int = 64,
    ) -> None:
        super().__init__(backbone)
        if latent_dim < 1:
            raise ValueError(f"latent_dim: expected >= 1, received {latent_dim}")
        spec = image_spec(backbone, channels=channels, image_size=image_size, mean=mean, std=std)
        self.latent_dim = int(latent_dim)
        self.image_shape = (spec["channels"], *spec["image_size"])
        self.register_buffer("mean", torch.tensor(spec["mean"]).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"]).view(-1, 1, 1), persistent=False)
        self.generator = ConvDecoder(
            latent_dim, spec["channels"], spec["image_size"], generator_width
        )
        self.head = nn.Linear(int(backbone.num_features), 1)
        _dcgan_init(self.generator)
        _dcgan_init(self.head)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"discriminator": backbone + head, "generator": generator}``."""
        disc = [*self.backbone.parameters(), *self.head.parameters()]
        return {
            "discriminator": [p for p in disc if p.requires_grad],
            "generator": [p for p in self.generator.parameters() if p.requires_grad],
        }

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) noise -> (N, C, H, W) images in the backbone's normalised space."""
        x01 = (torch.tanh(self.generator(z)) + 1) / 2
        return (x01 - self.mean) / self.std

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N,) logits of "real"."""
        return self.head(self.backbone(images)).squeeze(1)

    def forward(
        self, views: list[torch.Tensor], player: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Compute one player's loss (or both, for monitoring).

        Args:
            views: one (N, C, H, W) view of real images.
            player: ``"discriminator"``, ``"generator"`` or ``None`` (both, allowed only
                without gradient or in eval mode).

        Returns:
            ``loss`` (the player's; their sum without player), ``loss_discriminator`` /
            ``loss_generator``, ``d_real`` / ``d_fake`` (mean probability of "real").
        """
        real = self.check_views(views)[0]
        check_image_shape(real, self.image_shape, type(self).__name__)
        if player not in (None, *self.players):
            raise ValueError(f"player: expected one of {self.players} or None, received {player!r}")
        if player is None and self.training and torch.is_grad_enabled():
            raise ValueError(
                "player: expected 'discriminator' or 'generator' when training (the GAN is "
                "trained with the alternating protocol, see Objective.players), received None"
            )
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device, dtype=real.dtype)
        out: dict[str, torch.Tensor] = {}
        if player in (None, "discriminator"):
            with torch.no_grad():
                fake = self.generate(z)
            d_real, d_fake = self.discriminate(real), self.discriminate(fake)
            loss_d = F.binary_cross_entropy_with_logits(
                d_real, torch.ones_like(d_real)
            ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            out.update(
                loss=loss_d,
                loss_discriminator=loss_d.detach(),
                d_real=torch.sigmoid(d_real).mean().detach(),
                d_fake=torch.sigmoid(d_fake).mean().detach(),
            )
        if player in (None, "generator"):
            d_fake = self.discriminate(self.generate(z))
            loss_g = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
            out.update(loss_generator=loss_g.detach(), d_fake=torch.sigmoid(d_fake).mean().detach())
            out["loss"] = loss_g if player == "generator" else out["loss"] + loss_g
        return out
