"""Discovery and loading of plugins (built-in and third-party) into the registries.

Plugins are modules listed in the ``pyxfer`` entry-point group. Built-in plugins (those of the
``pyxfer`` distribution itself) always load; external ones can be switched off with
``PYXFER_DISABLE_PLUGIN_AUTOLOAD=1`` (all) or ``PYXFER_DISABLED_PLUGINS=name,other`` (by
entry-point or distribution name). A plugin that fails to import, or whose hook raises, is
reported by name (``pyxfer plugins`` shows it) and the others still load.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from pyxfer import hookspecs
from pyxfer.registry import Registry

log = logging.getLogger("pyxfer.plugins")

#: registry kind -> hook that fills it
KINDS: dict[str, str] = {
    "backbones": "pyxfer_register_backbones",
    "objectives": "pyxfer_register_objectives",
    "datasets": "pyxfer_register_datasets",
    "class_encoders": "pyxfer_register_class_encoders",
}

_BUILTIN_DIST = "pyxfer"


@dataclass
class PluginInfo:
    """What ``pyxfer plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str = "loaded"  # loaded | failed | disabled
    error: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _canon(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class PluginHost:
    """Owns the pluggy manager, the plugin table and the four registries."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._discovered = False
        self.registries: dict[str, Registry[Any]] = {
            kind: Registry(kind, loader=self._fill) for kind in KINDS
        }

    # -- discovery -------------------------------------------------------------------------
    def discover(self) -> None:
        """Import every enabled entry-point plugin once (lazily, on first registry use)."""
        if self._discovered:
            return
        self._discovered = True
        autoload = not _truthy(os.environ.get("PYXFER_DISABLE_PLUGIN_AUTOLOAD"))
        disabled = {
            _canon(n) for n in os.environ.get("PYXFER_DISABLED_PLUGINS", "").split(",") if n.strip()
        }
        for ep in sorted(metadata.entry_points(group=hookspecs.PROJECT_NAME), key=_ep_sort_key):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            version = ep.dist.version if ep.dist is not None else ""
            builtin = _canon(dist) == _BUILTIN_DIST
            info = PluginInfo(ep.name, dist, version, builtin)
            if ep.name in self.plugins:  # the same distribution seen twice on sys.path
                continue
            self.plugins[ep.name] = info
            if not builtin and (not autoload or {_canon(ep.name), _canon(dist)} & disabled):
                info.status = "disabled"
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # report, keep the others going
                info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
                log.warning("pyxfer plugin %r (from %s) failed to load: %s", ep.name, dist, exc)
        self.pm.check_pending()

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks); registries refill."""
        self.discover()
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()  # a misspelt hook name fails here, naming the plugin
        except Exception:
            self.pm.unregister(plugin, name=name)
            raise
        self.plugins[name] = PluginInfo(name, "<in-process>", "", builtin=False)
        self._invalidate()

    def unregister(self, name: str) -> None:
        """Remove a plugin registered by name; registries refill without it."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.plugins.pop(name, None)
        self._invalidate()

    def _invalidate(self) -> None:
        for info in self.plugins.values():
            info.registered.clear()
        for reg in self.registries.values():
            reg.reset()

    # -- filling ---------------------------------------------------------------------------
    def _fill(self, registry: Registry[Any]) -> None:
        self.discover()
        hook = getattr(self.pm.hook, KINDS[registry.kind])
        # Call each implementation on its own, in registration order (built-ins first), so that
        # registrations are attributed to the plugin that made them and one failing plugin
        # (import error, exception, duplicate name) is reported without hiding the others.
        for impl in hook.get_hookimpls():
            name = impl.plugin_name
            info = self.plugins.setdefault(
                name, PluginInfo(name, "<in-process>", "", builtin=False)
            )
            added: list[str] = []

            def register(
                rname: str,
                factory: Any,
                *,
                _plugin: str = name,
                _added: list[str] = added,
                **kw: Any,
            ) -> None:
                registry.register(rname, factory, plugin=_plugin, **kw)
                _added.append(rname)

            try:
                impl.function(register=register)
            except Exception as exc:
                for rname in added:  # roll back what the failing plugin registered here
                    registry.unregister(rname)
                info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
                log.warning("pyxfer plugin %r failed in %s: %s", name, hook.name, exc)
            else:
                info.registered.setdefault(registry.kind, []).extend(added)


def _ep_sort_key(ep: metadata.EntryPoint) -> tuple[int, str]:
    dist = ep.dist.name if ep.dist is not None else ""
    return (0 if _canon(dist) == _BUILTIN_DIST else 1, ep.name)


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host (created on first use)."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


def reset_host() -> PluginHost:
    """Forget everything loaded and start over (used after environment changes and by tests)."""
    global _HOST
    _HOST = PluginHost()
    return _HOST


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``: ``backbones``, ``objectives``, ``datasets``, ``class_encoders``."""
    try:
        return get_host().registries[kind]
    except KeyError:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, received {kind!r}") from None


get_registry = registry
