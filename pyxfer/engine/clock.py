"""``RunClock``: the one place that knows how far a run has come and which limit binds.

A run stops at ``max_steps``, ``epochs`` or ``max_time``, whichever comes first. Every schedule
— the learning rate's warmup and cosine, BYOL/MoCo momentum, the gradient-reversal ramp, the
pseudo-label ramps, the validation cadence — reads its progress from here, so a run limited by
wall-clock time decays its learning rate to the floor and completes its ramps by the end, just
as a run limited by steps does.

Progress is ``max(step / step_limit, elapsed / max_time)`` over the limits that are set. The
schedules of :mod:`pyxfer.engine.optim` and :meth:`Objective.on_step_end` take a step count and
a horizon; :meth:`RunClock.horizon` gives the horizon at which ``step / horizon`` equals the
progress, so they need not know which limit binds. The elapsed time is checkpointed, so a
resumed run continues the same curve.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def now() -> float:
    """The time source of every run clock (seconds, monotonic). Tests replace this function
    (``monkeypatch.setattr(pyxfer.engine.clock, "now", fake)``) to make a time budget
    deterministic."""
    return time.monotonic()


def _now() -> float:
    return now()  # looked up at each call, so a replaced ``now`` takes effect


#: horizon before any progress can be measured (step 0 of a time-limited run): far away, so
#: schedules start at their beginning
FAR = 1 << 62


class RunClock:
    """Progress of one run through its step and/or time budget.

    Args:
        step_limit: the step at which the run stops (from ``max_steps`` or ``epochs``), or
            ``None`` when only the time budget limits it.
        max_time: the wall-clock budget in seconds, or ``None``.
        clock: seconds, monotonic; default :func:`now`.
        elapsed: seconds already spent (a resumed run).

    Examples:
        >>> c = RunClock(None, 100.0, clock=lambda: 50.0)
        >>> c.start(); c.progress(10, elapsed=50.0), c.horizon(10, elapsed=50.0)
        (0.5, 20)
    """

    def __init__(
        self,
        step_limit: int | None,
        max_time: float | None,
        *,
        clock: Callable[[], float] | None = None,
        elapsed: float = 0.0,
    ) -> None:
        if step_limit is None and max_time is None:
            raise ValueError("RunClock: expected a step limit or a time budget, received neither")
        if step_limit is not None and step_limit < 0:
            raise ValueError(f"step_limit: expected >= 0 or None, received {step_limit}")
        if max_time is not None and not max_time > 0:
            raise ValueError(f"max_time: expected seconds > 0 or None, received {max_time}")
        self.step_limit = step_limit
        self.max_time = max_time
        self.clock = clock if clock is not None else _now
        self._elapsed0 = float(elapsed)
        self._t0: float | None = None

    def start(self) -> None:
        """Start (or restart after a resume) counting wall-clock time."""
        self._t0 = self.clock() - self._elapsed0

    def elapsed(self) -> float:
        """Seconds spent so far, including those before a resume."""
        if self._t0 is None:
            return self._elapsed0
        return self.clock() - self._t0

    def progress(self, step: int, elapsed: float | None = None) -> float:
        """Fraction of the run done, in [0, 1]: the furthest of the limits that are set."""
        p = 0.0
        if self.step_limit:
            p = step / self.step_limit
        if self.max_time is not None:
            e = self.elapsed() if elapsed is None else elapsed
            p = max(p, e / self.max_time)
        return min(1.0, max(0.0, p))

    def horizon(self, step: int, elapsed: float | None = None) -> int:
        """The step count the schedules stretch over, seen from ``step``: the step limit when
        only steps bind; under a time budget, the step at which the budget would run out at
        the pace so far (``step / progress``), never beyond the step limit."""
        if self.max_time is None:
            assert self.step_limit is not None
            return self.step_limit
        p = self.progress(step, elapsed)
        if p <= 0 or step <= 0:
            return self.step_limit if self.step_limit else FAR
        est = max(step, round(step / p))
        return min(est, self.step_limit) if self.step_limit else est

    def out_of_time(self, elapsed: float | None = None) -> bool:
        if self.max_time is None:
            return False
        return (self.elapsed() if elapsed is None else elapsed) >= self.max_time

    def binding(self, step: int, elapsed: float | None = None) -> str | None:
        """``"steps"`` or ``"time"`` once a limit is reached, else ``None``."""
        if self.step_limit is not None and step >= self.step_limit:
            return "steps"
        if self.out_of_time(elapsed):
            return "time"
        return None


class Cadence:
    """When to validate: every ``every`` steps, or (``every=None``) each time the run's progress
    crosses another ``1 / times`` of the way — which a time budget cannot skip — and always at
    the last step."""

    def __init__(self, every: int | None = None, times: int = 10) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every: expected an int >= 1 or None, received {every}")
        if times < 1:
            raise ValueError(f"times: expected an int >= 1, received {times}")
        self.every, self.times = every, times
        self._next = 1

    def due(self, step: int, progress: float, last: bool) -> bool:
        if last:
            return True
        if self.every is not None:
            return step % self.every == 0
        if progress * self.times >= self._next - 1e-9:
            self._next = int(progress * self.times + 1e-9) + 1
            return True
        return False
