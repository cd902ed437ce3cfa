"""One generic registry shared by backbones, objectives, data sets and class encoders."""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class RegistryError(ValueError):
    """A registration was refused (bad or duplicate name, bad factory)."""


class UnknownNameError(KeyError):
    """A name is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the plain message instead
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name, factory and where it came from."""

    name: str
    factory: Callable[..., T]
    plugin: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name -> factory table that knows which plugin registered each entry.

    ``loader`` is called once before the first lookup (lazy plugin loading); ``register``
    can also be called directly (for example from a notebook) with ``plugin="<user>"``.

    Examples:
        >>> r = Registry("widgets")
        >>> r.register("small", dict, plugin="demo")
        >>> r.list("sm*")
        ['small']
    """

    def __init__(self, kind: str, loader: Callable[[Registry[T]], None] | None = None) -> None:
        self.kind = kind
        self._loader = loader
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = loader is None

    # -- filling -----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        plugin: str = "<user>",
        description: str = "",
        **metadata: Any,
    ) -> None:
        """Add ``name``; a name taken by another entry fails naming both plugins."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(
                f"{self.kind}: plugin {plugin!r} registered an invalid name {name!r}; expected "
                "lower-case letters, digits and '_-.', starting with a letter or digit"
            )
        if not callable(factory):
            raise RegistryError(
                f"{self.kind}: plugin {plugin!r} registered {name!r} with a non-callable "
                f"factory of type {type(factory).__name__}"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise RegistryError(
                f"{self.kind}: {name!r} is registered twice, by plugin {other!r} and by plugin "
                f"{plugin!r}; uninstall or disable one of them (PYXFER_DISABLED_PLUGINS)"
            )
        self._entries[name] = Entry(name, factory, plugin, description, dict(metadata))

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if absent)."""
        self._entries.pop(name, None)

    def reset(self) -> None:
        """Forget every entry; the loader runs again on the next lookup."""
        self._entries.clear()
        self._loaded = self._loader is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader(self)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name fails with close matches."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._entries), n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}"
                f"{hint} (registered: {known})"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Call the factory registered as ``name``."""
        return self.get(name).factory(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style pattern such as ``"resnet*"``."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> builtins.list[Entry[T]]:  # ``list`` is the method above here
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)


def register_classes(
    register: Any,
    package: str,
    table: dict[str, tuple[str, str]],
    attributes: tuple[str, ...] = ("consumes", "augmentation", "num_views"),
) -> None:
    """Register the classes of a plugin package, one module per class (lazy: torch-free).

    Args:
        register: the registrar a ``pyxfer_register_*`` hook received.
        package: the plugin package (``__name__`` of its ``__init__``).
        table: registry name -> (module in ``package``, class name).
        attributes: class attributes stored with each entry as metadata.
    """
    import importlib

    for name, (module, cls_name) in table.items():
        cls = getattr(importlib.import_module(f"{package}.{module}"), cls_name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        register(name, cls, description=summary, **{a: getattr(cls, a) for a in attributes})
