"""Built-in training objectives (one module per objective), registered through the entry points.

===============  ===========================  =========  ===========  ===========
name             paper                        consumes   views        num
===============  ===========================  =========  ===========  ===========
simclr           Chen et al. 2020             views      simclr       2
moco_v2          He et al. 2020 / Chen 2020   views      moco_v2      2
byol             Grill et al. 2020            views      byol         2
barlow_twins     Zbontar et al. 2021          views      byol         2
vicreg           Bardes et al. 2022           views      byol         2
dino             Caron et al. 2021            views      dino         2 + n_local
rotation         Gidaris et al. 2018          views      rotation     1
dae              Vincent et al. 2008          views      none         1
vae              Kingma & Welling 2014        views      none         1
gan              Radford et al. 2016          views      none         1
mae              He et al. 2022               views      mae          1
===============  ===========================  =========  ===========  ===========

DINO's ``n_local`` (6 by default) sets its number of views; it asks the ``dino`` preset for that
many local views through :meth:`~pyxfer.objectives.base.Objective.preset_options`. MAE needs a
vision transformer backbone; its class says so with ``requires = "vit"`` (see
:class:`pyxfer.objectives.base.Objective`).
"""

from __future__ import annotations

from pyxfer import hookimpl
from pyxfer.hookspecs import Register
from pyxfer.registry import register_classes

#: registry name -> (module, class)
BUILTIN: dict[str, tuple[str, str]] = {
    "simclr": ("simclr", "SimCLR"),
    "moco_v2": ("moco_v2", "MoCoV2"),
    "byol": ("byol", "BYOL"),
    "barlow_twins": ("barlow_twins", "BarlowTwins"),
    "vicreg": ("vicreg", "VICReg"),
    "dino": ("dino", "DINO"),
    "rotation": ("rotation", "RotationPrediction"),
    "dae": ("dae", "DenoisingAutoencoder"),
    "vae": ("vae", "VAE"),
    "gan": ("gan", "DCGAN"),
    "mae": ("mae", "MAE"),
}


@hookimpl
def pyxfer_register_objectives(register: Register) -> None:
    register_classes(register, __name__, BUILTIN)
