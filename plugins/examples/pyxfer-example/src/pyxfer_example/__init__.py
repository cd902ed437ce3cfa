"""A third-party pyxfer plugin: one backbone and one objective.

Discovery is one line in ``pyproject.toml`` (the ``pyxfer`` entry-point group); the hooks
below receive a ``register`` callable and call it once per thing they provide.
"""

from __future__ import annotations

from pyxfer import hookimpl

__version__ = "0.1.0"


@hookimpl
def pyxfer_register_backbones(register):
    from pyxfer_example.tinynet import TinyNet

    register("example_tinynet", TinyNet, description="two conv blocks (example plugin)")


@hookimpl
def pyxfer_register_objectives(register):
    from pyxfer_example.alignment import Alignment

    register("example_alignment", Alignment, description="view alignment (example plugin)")
