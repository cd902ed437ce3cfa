"""Built-in backbones, registered through the ``pyxfer`` entry points."""

from __future__ import annotations

from pyxfer import hookimpl
from pyxfer.hookspecs import Register


@hookimpl
def pyxfer_register_backbones(register: Register) -> None:
    pass
