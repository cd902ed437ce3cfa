"""Host of the objective plugins: the contracts they implement and the parts they share.

- :mod:`pyxfer.objectives.base`: the objective contract (:class:`Objective`), the factory
  (:func:`create_objective`) and the registry queries (:func:`list_objectives`);
- :mod:`pyxfer.objectives.adaptation`: the adaptation contract (:class:`AdaptationObjective`:
  labelled source + unlabelled target), gradient reversal, the domain discriminator and the
  losses the adaptation methods share;
- :mod:`pyxfer.objectives.heads`: projection / prediction MLPs and image decoders;
- :mod:`pyxfer.objectives.collectives`: all-gathers across ranks with correct gradients.

The objectives themselves are plugins (``pyxfer.plugins.objectives``,
``pyxfer.plugins.adaptation``, or a third-party distribution). The names below are resolved
on first use.
"""

from __future__ import annotations

from typing import Any

from pyxfer._lazy import lazy_attributes

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "CONSUMES": "pyxfer.objectives.base",
    "Objective": "pyxfer.objectives.base",
    "create_objective": "pyxfer.objectives.base",
    "list_objectives": "pyxfer.objectives.base",
    "objective_consumes": "pyxfer.objectives.base",
    "AdaptationObjective": "pyxfer.objectives.adaptation",
    "AdaptationOutputs": "pyxfer.objectives.adaptation",
    "adaptation_objective_names": "pyxfer.objectives.adaptation",
}

__all__ = sorted(_LAZY)


_getattr, __dir__ = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    return _getattr(name)
