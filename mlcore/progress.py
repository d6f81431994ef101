"""Where a run is within one of its phases (packing the pictures, looking at them with the pretrained
network, testing, ...), in the words and numbers the run page and the queue page show: how far, how
many of the person's pictures, and about how long the rest takes. Django-free: the worker reports
(done, total) and the times; the pages only draw what this says.

The pace is measured from the phase's first report on, not from its start: the first batch of a
network's pass also builds (traces) its function, several seconds on a processor, and counting it
would make the first estimates far too long. Until the pace has been seen for PACE_AFTER_S seconds,
the page says so ("estimating the time left…") instead of guessing."""
from __future__ import annotations

from dataclasses import dataclass

from .words import duration

PACE_AFTER_S = 2.0
ESTIMATING = "estimating the time left…"
TESTING_PHASE = "Testing on pictures it never saw"


def unit_of(phase: str) -> str:
    """What a phase counts, in the person's terms: the pretrained network looks at the training and
    validation pictures (a picture with its mirror image is one), testing at the test pictures."""
    from .training import FEATURES_PHASE  # importing mlcore.training does not import Keras

    return {FEATURES_PHASE: "training and validation picture", TESTING_PHASE: "test picture"}.get(phase, "picture")


@dataclass(frozen=True)
class PhaseProgress:
    text: str  # "Looking at the pictures with the pretrained network: 1,200 of 2,931 pictures"
    percent: float | None  # of this phase, from 0 to 100; None when the phase is not counted
    seconds_left: float | None  # of this phase; None until the pace is known
    time_left_text: str  # "about 40 s left", ESTIMATING, or "" for a phase that is not counted

    def as_dict(self) -> dict:
        return {"phase_text": self.text, "phase_percent": self.percent,
                "phase_seconds_left": None if self.seconds_left is None else round(self.seconds_left),
                "phase_time_left_text": self.time_left_text}


def phase_progress(phase: str, done: int, total: int, *, paced_done: int = 0, paced_seconds: float | None = None,
                   since_latest_s: float = 0.0, unit: str = "picture") -> PhaseProgress:
    """`done` of `total` (0 when the phase is not counted). The pace: `paced_seconds` from the first report
    (when `paced_done` were done) to the latest one, which was `since_latest_s` ago."""
    if not total:
        return PhaseProgress(phase, None, None, "")
    done = max(0, min(done, total))
    text = f"{phase}: {done:,} of {total:,} {unit if total == 1 else unit + 's'}"
    seconds_left = _seconds_left(done, total, paced_done, paced_seconds, since_latest_s)
    if done >= total:
        seconds_left, time_left = 0.0, "almost done"
    elif seconds_left is None:
        time_left = ESTIMATING
    else:
        time_left = f"about {duration(max(seconds_left, 1))} left"
    return PhaseProgress(text, round(100 * done / total, 1), seconds_left, time_left)


def _seconds_left(done, total, paced_done, paced_seconds, since_latest_s):
    if paced_seconds is None or paced_seconds < PACE_AFTER_S or done <= paced_done:
        return None
    per_item = paced_seconds / (done - paced_done)
    return max(0.0, (total - done) * per_item - max(0.0, since_latest_s))
