"""Built-in data-set sources, registered through the ``pyxfer`` entry points."""

from __future__ import annotations

from pyxfer import hookimpl
from pyxfer.hookspecs import Register


@hookimpl
def pyxfer_register_datasets(register: Register) -> None:
    pass
