"""Built-in class encoders for zero-shot learning, registered through the entry points.

A class encoder has ``encode(descriptions) -> numpy.ndarray`` of shape (num_classes, dim).
"""

from __future__ import annotations

from typing import Any

from pyxfer import hookimpl
from pyxfer.hookspecs import Register


def _attributes(**kwargs: Any) -> Any:  # imported on use, so listing plugins stays cheap
    from pyxfer.plugins.encoders.attributes import AttributeEncoder

    return AttributeEncoder(**kwargs)


def _hashed_text(**kwargs: Any) -> Any:
    from pyxfer.plugins.encoders.text import HashedTextEncoder

    return HashedTextEncoder(**kwargs)


@hookimpl
def pyxfer_register_class_encoders(register: Register) -> None:
    register(
        "attributes",
        _attributes,
        description="attribute table rows, L2-normalised (optionally centred)",
    )
    register(
        "hashed-text",
        _hashed_text,
        description="hashed bag of words + character n-grams; lexical overlap only, no download",
    )
