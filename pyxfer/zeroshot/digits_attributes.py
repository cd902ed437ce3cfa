"""A class-description table for the ten handwritten digits, from how digits are drawn.

Each digit 0-9 is described by 20 binary attributes of its usual handwritten (MNIST-style)
shape: loops, straight strokes, curves, openings and symmetries. The rows were written by hand
from common knowledge of digit shapes (not learned from any data), so they can serve as the
class descriptions of a zero-shot benchmark on digit images: hold some digits out, train on the
others, and recognise the held-out ones from their rows alone.

Every digit's row is a different binary vector, at least 3 attributes apart from any other.

Examples:
    >>> table = digit_descriptions()
    >>> table.matrix.shape
    (10, 20)
    >>> table.names[8], int(table.matrix[8, ATTRIBUTE_NAMES.index("two_loops")])
    ('eight', 1)
"""

from __future__ import annotations

import numpy as np

from pyxfer.zeroshot.descriptions import ClassDescriptions

#: attribute name -> what it means (a stroke pattern seen when the digit is written)
ATTRIBUTES: dict[str, str] = {
    "closed_loop": "at least one closed loop",
    "two_loops": "two closed loops",
    "loop_in_upper_half": "a closed loop occupying the upper half",
    "loop_in_lower_half": "a closed loop occupying the lower half",
    "vertical_stroke": "a long straight (near-)vertical stroke",
    "top_horizontal_bar": "a straight horizontal bar at the top",
    "bottom_horizontal_bar": "a straight horizontal bar at the bottom",
    "middle_horizontal_bar": "a straight horizontal bar across the middle",
    "diagonal_stroke": "a long straight diagonal stroke",
    "curve_at_top": "a rounded arc at the top",
    "curve_at_bottom": "a rounded arc at the bottom",
    "opens_to_left": "a concavity open towards the left",
    "opens_to_right": "a concavity open towards the right",
    "opens_at_top": "a gap open towards the top",
    "left_right_symmetric": "roughly mirror-symmetric about a vertical axis",
    "top_bottom_symmetric": "roughly mirror-symmetric about a horizontal axis",
    "only_straight_strokes": "drawn with straight strokes only (no curves)",
    "pinched_middle": "the shape narrows to a waist or cusp at mid-height",
    "narrow": "much taller than wide",
    "strokes_cross": "two strokes cross each other (an X- or +-junction)",
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

# Rows in the order of ATTRIBUTE_NAMES. Columns:
#  loop two up lo vert topb botb midb diag ctop cbot oL oR oTop symLR symTB straight pinch narrow x
_ROWS: dict[int, list[int]] = {
    # 0: one oval loop filling the cell, curved at top and bottom, symmetric both ways
    0: [1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    # 1: a single straight vertical stroke, narrow, symmetric both ways
    1: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0],
    # 2: arc at the top opening down-left, diagonal down to a flat bottom bar
    2: [0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    # 3: two bumps stacked, open on the left, curved top and bottom, pinched at the middle
    3: [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0],
    # 4: slanted left stroke, horizontal bar, long vertical crossing it; open at the top
    4: [0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1],
    # 5: top bar, short vertical at the left, lower bowl curved at the bottom, open to the left
    5: [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    # 6: curved stroke from the top down into a closed loop in the lower half, open right above
    6: [1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    # 7: top bar and a long diagonal down to the left; straight strokes only
    7: [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0],
    # 8: two stacked loops whose strokes cross at a pinched waist, symmetric both ways
    8: [1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1],
    # 9: closed loop in the upper half on a straight vertical tail, open to the left below
    9: [1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
}

#: (10, 20) float64 attribute matrix, row d = digit d
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
