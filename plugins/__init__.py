"""Built-in plugins of pyxfer, shipped as ``pyxfer.plugins``.

They register through the ``pyxfer`` entry-point group exactly as third-party plugins do
(see ``pyproject.toml``), one sub-package per registry.
"""
