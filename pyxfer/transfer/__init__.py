"""Transfer learning (:func:`finetune`) and domain adaptation (:func:`adapt`) runs."""

from __future__ import annotations

from pyxfer.transfer.adapt import AdaptResult, adapt
from pyxfer.transfer.finetune import BN_MODES, STRATEGIES, FinetuneResult, finetune

__all__ = ["BN_MODES", "STRATEGIES", "AdaptResult", "FinetuneResult", "adapt", "finetune"]
