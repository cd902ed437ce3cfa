"""Denoising autoencoder: reconstruct the clean image from the features of a corrupted one.

Vincent, Larochelle, Bengio, Manzagol. "Extracting and Composing Robust Features with
Denoising Autoencoders". ICML 2008. https://doi.org/10.1145/1390156.1390294
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ConvDecoder, check_image_shape, image_spec

NOISES = ("gaussian", "masking")


def corrupt(images: torch.Tensor, noise: str, level: float) -> torch.Tensor:
    """The corruption ``q(x~ | x)``.

    Args:
        images: (N, C, H, W) normalised images.
        noise: ``"gaussian"`` (add N(0, level^2) per value) or ``"masking"`` (set a random
            fraction ``level`` of the pixels, all channels together, to 0, i.e. to the mean
            colour of normalised images).
        level: noise standard deviation or masked fraction.

    Returns:
        (N, C, H, W) corrupted images.
    """
    if noise == "gaussian":
        return images + level * torch.randn_like(images)
    if noise == "masking":
        keep = torch.rand_like(images[:, :1]) >= level  # (N, 1, H, W)
        return images * keep
    raise ValueError(f"noise: expected one of {NOISES}, received {noise!r}")


class DenoisingAutoencoder(Objective):
    """Denoising autoencoder (Vincent et al. 2008) around a backbone.

    Encoder: the backbone's pooled features of the corrupted image; decoder:
    :class:`~pyxfer.objectives.heads.ConvDecoder` from those features to an image of the
    backbone's input size; loss: mean squared error against the clean (normalised) image. The
    paper's masking noise destroys a fraction of the inputs; the default here is Gaussian noise
    with standard deviation 0.5 in normalised units (about 0.12 in [0, 1] pixel units).

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        noise: ``"gaussian"`` or ``"masking"``.
        noise_level: standard deviation (gaussian) or masked fraction (masking).
        channels: image channels (default: ``backbone.input_spec.channels``).
        image_size: image side or (H, W) (default: ``backbone.input_spec.size``).
        decoder_width: channels of the decoder's last stage.

    Examples:
        >>> obj = create_objective("dae", backbone, channels=1, image_size=28)  # doctest: +SKIP
        >>> obj([images])["loss"].backward()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "none"
    num_views: ClassVar[int] = 1

    def __init__(
        self,
        backbone: nn.Module,
        noise: str = "gaussian",
        noise_level: float = 0.5,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        decoder_width: int = 64,
    ) -> None:
        super().__init__(backbone)
        if noise not in NOISES:
            raise ValueError(f"noise: expected one of {NOISES}, received {noise!r}")
        if noise_level < 0 or (noise == "masking" and noise_level >= 1):
            raise ValueError(
                f"noise_level: expected >= 0 (and < 1 for masking), received {noise_level}"
            )
        self.noise, self.noise_level = noise, float(noise_level)
        spec = image_spec(backbone, channels=channels, image_size=image_size)
        self.image_shape = (spec["channels"], *spec["image_size"])
        self.decoder = ConvDecoder(
            int(backbone.num_features), spec["channels"], spec["image_size"], decoder_width
        )

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: one (N, C, H, W) view.

        Returns:
            ``loss`` (the reconstruction MSE).
        """
        clean = self.check_views(views)[0]
        check_image_shape(clean, self.image_shape, type(self).__name__)
        recon = self.decoder(self.backbone(corrupt(clean, self.noise, self.noise_level)))
        return {"loss": F.mse_loss(recon, clean)}
