"""``pyxfer plugins``: what is loaded, from which distribution, with its registered names."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "plugins",
        help="list plugins and what they register",
        description="List every plugin found in the 'pyxfer' entry-point group (and in-process "
        "ones): distribution, version, status, and the names it registered in each registry. "
        "PYXFER_DISABLE_PLUGIN_AUTOLOAD=1 switches external plugins off; "
        "PYXFER_DISABLED_PLUGINS=a,b blocks some by name.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.pluginmanager import KINDS, get_host

    host = get_host()
    for kind in KINDS:  # fill every registry so each plugin's names are known
        host.registries[kind].list()
    infos = list(host.plugins.values())
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return 0
    for info in infos:
        origin = f"{info.distribution} {info.version}".strip()
        tag = " (built-in)" if info.builtin else ""
        print(f"{info.name}  [{origin}]{tag}  {info.status}")
        if info.error:
            print(f"    error: {info.error}")
        for kind, names in info.registered.items():
            print(f"    {kind}: {', '.join(names)}")
    return 0
