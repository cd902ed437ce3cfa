"""What the commands share: the training flags (generated from :class:`TrainConfig`), the
``KEY=VALUE`` parser, the TOML reader and ``--help`` with the registered names.

Every training flag comes from one place, :class:`pyxfer.engine.TrainConfig`: its name
(``--max-steps`` for ``max_steps``, or the field's ``flag``), type (from the annotation), help
text and default (from the field). A command picks the fields it takes with
:func:`add_train_flags`; the values a user gave (TOML file, then flags) are gathered by
:func:`collect`. Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pyxfer.engine.config import TrainConfig

#: every TrainConfig field, in declaration order
TRAIN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))
#: fields only pretraining takes: kNN monitoring, periodic checkpoints, resuming
PRETRAIN_ONLY: tuple[str, ...] = (
    "knn_every",
    "knn_data",
    "knn_holdout",
    "knn_k",
    "knn_temperature",
    "knn_max_bank",
    "checkpoint_every",
    "keep_last",
    "resume",
    "allow_layout_change",
)


#: title of the argument group of the training flags
TRAINING = "training settings (pyxfer.engine.TrainConfig)"


def train_fields(without: Iterable[str] = ()) -> list[str]:
    """The TrainConfig fields but ``without`` (which must be fields), in declaration order."""
    skip = set(without)
    unknown = sorted(skip - set(TRAIN_FIELDS))
    if unknown:
        raise ValueError(f"without: expected TrainConfig fields, received {unknown}")
    return [f for f in TRAIN_FIELDS if f not in skip]


# -- KEY=VALUE ---------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], else the text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_opts(items: Any, where: str) -> dict[str, Any]:
    """``["k=v", ...]`` (repeated ``--backbone-opt``), one ``"k=v"`` or a TOML table -> dict.

    Keys are Python names (``"img-size"`` -> ``"img_size"``); values go through
    :func:`parse_value`. ``where`` names the flag or key in the error message.
    """
    if items is None:
        return {}
    if isinstance(items, dict):
        return {str(k).replace("-", "_"): v for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where}: expected KEY=VALUE, received {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


# -- TOML --------------------------------------------------------------------------------------
def read_toml(path: str | os.PathLike[str], where: str = "--config") -> dict[str, Any]:
    """The top-level table of a TOML file (``tomllib``)."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{where}: expected a TOML file, received {str(path)!r}")
    with open(p, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{where}: {str(path)!r} is not valid TOML ({exc})") from None


# -- flags from TrainConfig --------------------------------------------------------------------
def _field(name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            return f
    raise ValueError(f"fields: expected TrainConfig fields, received {name!r}")


def flag_of(name: str) -> str:
    """The long flag of the TrainConfig field ``name`` (``max_steps`` -> ``--max-steps``)."""
    return _field(name).metadata.get("flag") or "--" + name.replace("_", "-")


def default_text(name: str) -> str | None:
    """The default of a TrainConfig field as ``--help`` shows it (None: nothing to show)."""
    f = _field(name)
    if f.default is not dataclasses.MISSING:
        value: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        value = None
    if value is None:
        return f.metadata.get("unset")
    if isinstance(value, bool):
        return flag_of(name) if value else "--no-" + flag_of(name)[2:]
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return None if not value else json.dumps(value)
    return str(value)


def _kind(name: str) -> tuple[Any, int]:
    """(element type, count) of a field's annotation, ``Optional`` removed: ``(int, 1)``,
    ``(float, 2)`` for a pair, ``(dict, 1)``..."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint) or hint
    if origin is tuple:
        args = typing.get_args(hint)
        return args[0], len(args)
    if origin in (dict, bool, int, float, str):
        return origin, 1
    raise TypeError(f"TrainConfig.{name}: no flag for the annotation {hint!r}")


def add_train_flags(
    parser: argparse.ArgumentParser,
    fields: Iterable[str],
    title: str | None = None,
    defaults: dict[str, str] | None = None,
) -> None:
    """Add the flags of the TrainConfig ``fields`` to ``parser``, with help and default.

    A flag's value lands under the field's name and only when given (``default`` is
    ``SUPPRESS``): whatever was not given keeps the default of the function trained with.
    ``title``: put the flags in an argument group of that title. ``defaults``: the defaults
    to show for fields whose command trains with other values than the field's.
    """
    target: Any = parser.add_argument_group(title) if title else parser
    for name in fields:
        f = _field(name)
        meta = f.metadata
        if "help" not in meta:
            raise ValueError(f"TrainConfig.{name}: expected help in its metadata, received none")
        shown = (defaults or {}).get(name) or default_text(name)
        help_text = meta["help"] + (f" (default: {shown})" if shown else "")
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        flags = [meta["short"]] if meta.get("short") else []
        flags.append(flag_of(name))
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        kind, count = _kind(name)
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is dict:
            kw["action"] = "append"
        else:
            kw["type"] = kind
            if count > 1:
                kw["nargs"] = count
            if meta.get("choices"):
                kw["choices"] = meta["choices"]
        target.add_argument(*flags, **kw)


def add_backbone_opt(parser: argparse.ArgumentParser) -> None:
    """``-o/--backbone-opt K=V`` (and ``--option``, its former name, hidden)."""
    add_train_flags(parser, ["backbone_opts"])
    parser.add_argument(
        "--option",
        dest="backbone_opts",
        action="append",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


# -- TOML file <- flags ------------------------------------------------------------------------
def config_keys(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every spelling a TOML key may take -> the argument it sets.

    ``max-steps``, ``max_steps``, ``backbone-opt``, ``backbone_opts``...; ``--no-X`` spellings
    are left out (``flip = false`` says it).
    """
    keys: dict[str, str] = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help", "config"):
            continue
        names = [action.dest] + [
            s[2:] for s in action.option_strings if s.startswith("--") and not s.startswith("--no-")
        ]
        for n in names:
            keys[n] = keys[n.replace("-", "_")] = keys[n.replace("_", "-")] = action.dest
    return keys


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.toml`` and what :func:`collect` needs; call it after the other flags."""
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=argparse.SUPPRESS,
        help="TOML file whose keys mirror these flags (max-steps = 100, "
        "backbone-opt = {img_size = 8}); flags given override it",
    )
    flags: dict[str, str] = {}
    for action in parser._actions:
        for s in action.option_strings:
            if s.startswith("--"):
                flags.setdefault(action.dest, s)
    parser.set_defaults(_keys=config_keys(parser), _flags=flags)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a user gave: the ``--config`` file, then the flags over it.

    Keys are argument names (``max_steps``, ``backbone_opts``); ``*_opts`` values are dicts.

    Raises:
        ValueError: a key the command does not take, or a bad ``KEY=VALUE``.
    """
    keys: dict[str, str] = getattr(args, "_keys", {})
    flags: dict[str, str] = getattr(args, "_flags", {})
    given = {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("command", "verbose")
    }
    path = given.pop("config", None)
    settings: dict[str, Any] = {}
    if path is not None:
        where = f"--config {path}"
        table = read_toml(path)
        unknown = sorted(k for k in table if k not in keys)
        if unknown:
            known = sorted(set(keys.values()))
            raise ValueError(f"{where}: unknown keys {unknown}; known keys are {known}")
        for key, value in table.items():
            dest = keys[key]
            settings[dest] = (
                parse_opts(value, f"{where}: {key}") if dest.endswith("_opts") else value
            )
    for dest, value in given.items():
        if dest.endswith("_opts"):
            value = parse_opts(value, flags.get(dest, dest))
        settings[dest] = value
    return settings


# -- --help with the registries ----------------------------------------------------------------
Listing = tuple[str, str, Callable[[], Sequence[str]] | None]


def registered(kind: str, names: Callable[[], Sequence[str]] | None = None) -> str:
    """One line per registered ``kind`` (or the ``names()`` of it): name and description."""
    try:
        from pyxfer.pluginmanager import registry

        reg = registry(kind)
        chosen = names() if names is not None else reg.list()
        lines = [f"  {n:<20} {reg.get(n).description}".rstrip() for n in chosen]
        return "\n".join(lines) or "  (none registered)"
    except Exception as exc:  # help must print even when a plugin is broken
        return f"  (could not list: {exc})"


class RegistryHelp(argparse.Action):
    """``-h``: help with an epilog listing registered names, loaded only when asked for.

    ``listings``: ``(title, registry kind, names() or None for all)``; ``epilog``: the text
    after them.
    """

    def __init__(
        self,
        option_strings: list[str],
        dest: str = argparse.SUPPRESS,
        *,
        listings: Sequence[Listing] = (),
        epilog: str = "",
        **kw: Any,
    ) -> None:
        kw["default"] = argparse.SUPPRESS
        super().__init__(option_strings, dest=dest, nargs=0, **kw)
        self.listings, self.epilog = listings, epilog

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        parts = [f"{title}:\n{registered(kind, names)}" for title, kind, names in self.listings]
        parser.epilog = "\n\n".join([*parts, self.epilog])
        parser.print_help()
        parser.exit()


def add_help(parser: argparse.ArgumentParser, listings: Sequence[Listing], epilog: str) -> None:
    """``-h/--help`` listing ``listings`` then ``epilog`` (parser made with add_help=False)."""
    parser.add_argument(
        "-h",
        "--help",
        action=RegistryHelp,
        listings=listings,
        epilog=epilog,
        help="show this help (with the registered names) and exit",
    )
