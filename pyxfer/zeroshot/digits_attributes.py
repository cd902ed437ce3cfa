"""A class-description table for the ten handwritten digits, from how digits are drawn.

Each digit 0-9 is described by 20 attributes of its usual handwritten (MNIST-style) shape, all
from public knowledge rather than learned from any data:

- seven *segments* (``seg_*``): which of the seven segments of a seven-segment display the
  digit lights (the standard encoding of digits on calculators and clocks: top, upper right,
  lower right, bottom, lower left, upper left, middle), with 0.5 where the handwritten form
  departs from the display (a handwritten 1 is one centred stroke rather than the right-hand
  segments; the top of a 6 is a curved stroke rather than a bar; the stroke of a 7 leaves the
  lower right for the middle; the middle of a 2 or a 3 is a diagonal or a cusp rather than a
  bar; the tail of a 9 ends straight or curls into a bottom stroke);
- thirteen *stroke* attributes: closed loops and where they are, long straight vertical or
  diagonal strokes, a straight top bar, curves, the directions the shape opens to, crossing
  strokes, mirror symmetry and a narrow shape, with 0.5 for what is drawn both ways (many
  handwritten 1s slant; the left stroke of a 4 slants; a 5's short left stroke).

The segments say *where* the strokes are, which is what a convolutional feature map keeps, so
an attribute learned on some digits transfers to others drawn with the same segment.
Values are 0, 0.5 or 1; every digit's row differs from every other.

Examples:
    >>> table = digit_descriptions()
    >>> table.matrix.shape
    (10, 20)
    >>> table.names[8], float(table.matrix[8, ATTRIBUTE_NAMES.index("seg_middle")])
    ('eight', 1.0)
"""

from __future__ import annotations

import numpy as np

from pyxfer.zeroshot.descriptions import ClassDescriptions

#: attribute name -> what it means (a stroke pattern seen when the digit is written)
ATTRIBUTES: dict[str, str] = {
    "seg_top": "seven-segment a: a stroke along the top",
    "seg_upper_right": "seven-segment b: a stroke down the upper right",
    "seg_lower_right": "seven-segment c: a stroke down the lower right",
    "seg_bottom": "seven-segment d: a stroke along the bottom",
    "seg_lower_left": "seven-segment e: a stroke down the lower left",
    "seg_upper_left": "seven-segment f: a stroke down the upper left",
    "seg_middle": "seven-segment g: a stroke across the middle",
    "closed_loop": "at least one closed loop",
    "loop_in_upper_half": "a closed loop occupying the upper half",
    "loop_in_lower_half": "a closed loop occupying the lower half",
    "vertical_stroke": "a long straight (near-)vertical stroke",
    "diagonal_stroke": "a long straight diagonal stroke",
    "straight_top_bar": "a straight horizontal bar at the top (not an arc)",
    "curved_strokes": "drawn with curved strokes",
    "opens_to_left": "a concavity open towards the left",
    "opens_to_right": "a concavity open towards the right",
    "opens_at_top": "a gap open towards the top",
    "strokes_cross": "two strokes cross each other (an X- or +-junction)",
    "left_right_symmetric": "roughly mirror-symmetric about a vertical axis",
    "narrow": "much taller than wide",
}

ATTRIBUTE_NAMES: list[str] = list(ATTRIBUTES)

DIGIT_NAMES: list[str] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]

_H = 0.5  # drawn both ways / partly

# Rows in the order of ATTRIBUTE_NAMES. Columns:
# segments top ur lr bot ll ul mid | loop up lo | vert diag bar curve oL oR oTop x sym narrow
_ROWS: dict[int, list[float]] = {
    # 0: an oval loop through the six outer segments, no middle; curved; symmetric
    0: [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
    # 1: one straight (often slanted) centred vertical stroke, narrow, symmetric
    1: [0, _H, _H, 0, 0, 0, 0, 0, 0, 0, 1, _H, 0, 0, 0, 0, 0, 0, 1, 1],
    # 2: top arc open down-left, diagonal through the middle to the lower left, flat bottom
    2: [1, 1, 0, 1, 1, 0, _H, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0],
    # 3: two bumps open to the left, meeting in a cusp at the middle
    3: [1, 1, 1, 1, 0, 0, _H, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    # 4: slanted upper-left stroke, middle bar crossed by a long vertical; open at the top
    4: [0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, _H, 0, 0, 0, 0, 1, 1, 0, 0],
    # 5: straight top bar, short upper-left stroke, lower bowl open to the left
    5: [1, 0, 1, 1, 0, 1, 1, 0, 0, 0, _H, 0, 1, 1, 1, 1, 0, 0, 0, 0],
    # 6: curved stroke from the top down the left into a closed loop in the lower half
    6: [_H, 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0],
    # 7: straight top bar and a long straight diagonal down to the lower middle
    7: [1, 1, _H, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0],
    # 8: two stacked loops crossing at the middle: all seven segments; symmetric
    8: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0],
    # 9: closed loop in the upper half on a straight vertical tail, open to the left below
    9: [1, 1, 1, _H, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0],
}

#: (10, 20) float64 attribute matrix, row d = digit d, values in {0, 0.5, 1}
DIGIT_ATTRIBUTES: np.ndarray = np.array([_ROWS[d] for d in range(10)], dtype=np.float64)

#: one short sentence per digit, for text class encoders
DIGIT_SENTENCES: list[str] = [
    "zero: a single closed oval loop, round at the top and bottom",
    "one: a single straight vertical stroke, tall and narrow",
    "two: a curved arc at the top, a diagonal stroke, a flat horizontal bar at the bottom",
    "three: two stacked curved bumps open to the left, meeting in a point at the middle",
    "four: a slanted stroke, a horizontal bar and a vertical stroke crossing it, open at the top",
    "five: a horizontal bar at the top, a short vertical stroke, a curved bowl at the bottom",
    "six: a curved stroke from the top into a closed loop at the bottom",
    "seven: a horizontal bar at the top and a long straight diagonal stroke",
    "eight: two stacked closed loops crossing in the middle",
    "nine: a closed loop at the top on a straight vertical tail",
]


def digit_descriptions() -> ClassDescriptions:
    """The digit table as :class:`ClassDescriptions` (class id = digit, names zero..nine)."""
    return ClassDescriptions(
        DIGIT_ATTRIBUTES.copy(), np.arange(10), list(DIGIT_NAMES), list(ATTRIBUTE_NAMES)
    )
