"""Hook specifications: the whole plugin API of pyxfer in one file.

A plugin is a module (or object) with functions marked ``@pyxfer.hookimpl`` whose names are the
hooks below. It is found through the ``pyxfer`` entry-point group::

    [project.entry-points.pyxfer]
    my-plugin = "my_package.plugin"

Each hook receives a ``register`` callable; the plugin calls it once per thing it provides and
the host owns the table (it checks names, records which plugin registered what, and reports
duplicates naming both plugins). Hooks are called lazily, the first time the matching registry
is used, never at ``import pyxfer``.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT_NAME = "pyxfer"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The registrar passed to every ``pyxfer_register_*`` hook.

    ``register(name, factory, *, description="", **metadata)``: ``name`` is a lower-case
    identifier (letters, digits, ``_ - .``), ``factory`` is a callable that builds the thing
    (its keyword arguments are the options users pass), ``description`` is one line shown by
    ``pyxfer plugins``; extra ``metadata`` is stored with the entry.
    """

    def __call__(
        self, name: str, factory: Any, *, description: str = "", **metadata: Any
    ) -> None: ...


@hookspec
def pyxfer_register_backbones(register: Register) -> None:
    """Register backbone constructors.

    Called once, the first time the backbone registry is used. Call
    ``register("name", factory)`` for each backbone; ``factory(**kwargs)`` must return a
    :class:`pyxfer.backbone.Backbone` (an ``nn.Module`` with ``num_features``,
    ``forward_features``, pooled ``forward``, ``input_spec`` and ``param_groups()``).
    Factories must not download anything; weights are loaded by the host from a local file.
    """


@hookspec
def pyxfer_register_objectives(register: Register) -> None:
    """Register training objectives (self-supervised, generative, adaptation).

    Called once, the first time the objective registry is used. ``factory(backbone, **kwargs)``
    must return a :class:`pyxfer.objectives.base.Objective`: an ``nn.Module`` that declares what it
    consumes and with which augmentation, and whose ``forward`` returns a dict with ``loss``.
    """


@hookspec
def pyxfer_register_datasets(register: Register) -> None:
    """Register data-set sources, addressed as ``name`` or ``name:ARGUMENT``.

    Called once, the first time the data-set registry is used. ``factory(argument, **kwargs)``
    receives the text after the first ``:`` (or ``None``) and must return a
    :class:`pyxfer.data.ImageStore`. ``--data folder:photos/`` calls the ``folder`` factory with
    ``"photos/"``. Register with ``resizes=True`` when the factory also accepts ``size``,
    ``channels``, ``fit``, ``threads``, ``on_error`` and ``progress`` (it decodes straight to a
    size, as ``folder`` does); ``pyxfer pack`` then passes them instead of resizing afterwards.
    """


@hookspec
def pyxfer_register_class_encoders(register: Register) -> None:
    """Register class encoders for zero-shot learning.

    Called once, the first time the class-encoder registry is used. ``factory(**kwargs)`` must
    return an object with ``encode(descriptions) -> numpy.ndarray`` of shape
    (num_classes, dim) that turns class descriptions (attribute rows, names or sentences) into
    class embeddings.
    """
