"""Variational autoencoder: reparameterised Gaussian posterior, KL + reconstruction.

Kingma, Welling. "Auto-Encoding Variational Bayes". ICLR 2014.
https://arxiv.org/abs/1312.6114 ; the beta weight on the KL term is from Higgins et al.
"beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework". ICLR 2017.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ConvDecoder, check_image_shape, image_spec

LIKELIHOODS = ("gaussian", "bernoulli")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``.

    Args:
        mu: (N, L) posterior means.
        logvar: (N, L) posterior log-variances.

    Returns:
        (N,) the KL divergence of each sample (paper, appendix B).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


class VAE(Objective):
    """Variational autoencoder (Kingma & Welling 2014) whose encoder is the backbone.

    Encoder: backbone features -> linear ``mu`` and ``logvar`` heads (latent width
    ``latent_dim``); ``z = mu + exp(logvar / 2) * eps`` (reparameterisation); decoder:
    :class:`~pyxfer.objectives.heads.ConvDecoder` from ``z`` to an image. The loss is the
    negative ELBO per image, ``recon + beta * KL``, averaged over the batch, with

    - ``likelihood="gaussian"`` (default): unit-variance Gaussian on the normalised image,
      ``recon = 1/2 sum_pixels (x - x_hat)^2`` (the negative log-likelihood up to a constant);
    - ``likelihood="bernoulli"``: ``recon = sum_pixels BCE(x01, sigmoid(logits))`` on the image
      mapped back to [0, 1] with the backbone's ``mean`` / ``std``.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        latent_dim: width of ``z``.
        beta: weight of the KL term (1 = the ELBO).
        likelihood: ``"gaussian"`` or ``"bernoulli"``.
        channels, image_size, mean, std: the image format (default: ``backbone.input_spec``).
        decoder_width: channels of the decoder's last stage.

    Examples:
        >>> obj = create_objective("vae", backbone, channels=1, image_size=28)  # doctest: +SKIP
        >>> out = obj([images]); out["loss"].backward(); out["kl"], out["reconstruction"]
        >>> samples = obj.sample(16)  # (16, C, H, W) normalised images
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "none"
    num_views: ClassVar[int] = 1

    def __init__(
        self,
        backbone: nn.Module,
        latent_dim: int = 128,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        decoder_width: int = 64,
    ) -> None:
        super().__init__(backbone)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, received {likelihood!r}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim: expected >= 1, received {latent_dim}")
        if beta < 0:
            raise ValueError(f"beta: expected >= 0, received {beta}")
        spec = image_spec(backbone, channels=channels, image_size=image_size, mean=mean, std=std)
        self.likelihood, self.beta, self.latent_dim = likelihood, float(beta), int(latent_dim)
        self.image_shape = (spec["channels"], *spec["image_size"])
        self.register_buffer("mean", torch.tensor(spec["mean"]).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"]).view(-1, 1, 1), persistent=False)
        nf = int(backbone.num_features)
        self.mu = nn.Linear(nf, latent_dim)
        self.logvar = nn.Linear(nf, latent_dim)
        self.decoder = ConvDecoder(latent_dim, spec["channels"], spec["image_size"], decoder_width)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> posterior ``mu``, ``logvar``, each (N, latent_dim)."""
        h = self.backbone(images)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> (N, C, H, W) normalised images (means of p(x|z))."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return (torch.sigmoid(out) - self.mean) / self.std
        return out

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` images decoded from the prior, (n, C, H, W) normalised."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.mean.device))

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: one (N, C, H, W) view.

        Returns:
            ``loss``, ``reconstruction``, ``kl``.
        """
        x = self.check_views(views)[0]
        check_image_shape(x, self.image_shape, type(self).__name__)
        mu, logvar = self.encode(x)  # (N, L) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation
        out = self.decoder(z)  # (N, C, H, W)
        if self.likelihood == "gaussian":
            recon = 0.5 * (out - x).pow(2).flatten(1).sum(1)  # (N,)
        else:
            target = (x * self.std + self.mean).clamp(0, 1)
            recon = F.binary_cross_entropy_with_logits(out, target, reduction="none")
            recon = recon.flatten(1).sum(1)
        kl = gaussian_kl(mu, logvar)  # (N,)
        loss = (recon + self.beta * kl).mean()
        return {"loss": loss, "reconstruction": recon.mean().detach(), "kl": kl.mean().detach()}
