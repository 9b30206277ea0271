"""Event tables with the real HBN timing: CCD runs and RestingState.

The CCD timing was read off the R1 event files: each run is one block of about 25
trials; a trial's target grating starts to ramp 2.8, 4.4 or 6.0 s after
``contrastTrial_start`` and the next trial starts 2.4 s after the target, so a press
later than 2.4 s falls into the next trial and is logged as ``non_target``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TARGET_DELAYS = (2.8, 4.4, 6.0)
RESPONSE_WINDOW = 2.4
CODES = {
    "contrastTrial_start": "5",
    "left_target": "8",
    "right_target": "9",
    "left_buttonPress": "12",
    "right_buttonPress": "13",
    "contrastChangeB1_start": "94",
    "contrastChangeB2_start": "95",
    "contrastChangeB3_start": "96",
    "resting_start": "90",
    "instructed_toOpenEyes": "20",
    "instructed_toCloseEyes": "30",
    "break cnt": "break cnt",
    "9999": "9999",
}


@dataclass(frozen=True)
class SubjectBehaviour:
    """A subject's response-time distribution and error rates (the C1 latent truth)."""

    rt_mean: float
    rt_std: float
    p_wrong: float = 0.08
    p_early: float = 0.12


def _row(onset: float, value: str, feedback: str = "n/a") -> dict:
    return {
        "onset": round(onset, 3),
        "duration": "n/a",
        "value": value,
        "event_code": CODES[value],
        "feedback": feedback,
    }


def ccd_run_events(
    rng: np.random.Generator, behaviour: SubjectBehaviour, run: int, n_trials: int = 24
) -> tuple[pd.DataFrame, float]:
    """One CCD run (one block) and its duration in whole seconds."""
    rows = [_row(0.0, "break cnt")]
    block_start = float(rng.uniform(20.0, 35.0))
    rows.append(_row(block_start, f"contrastChangeB{min(run, 3)}_start"))
    t = block_start + float(rng.uniform(5.0, 7.0))
    # 24 complete trials plus one more trial start, which the official definition drops
    # because no end_experiment closes it (as in the real files).
    for i in range(n_trials + 1):
        rows.append(_row(t, "contrastTrial_start"))
        delay = float(rng.choice(TARGET_DELAYS))
        if rng.random() < behaviour.p_early:
            side = "left" if rng.random() < 0.5 else "right"
            rows.append(
                _row(t + rng.uniform(0.3, delay - 0.2), f"{side}_buttonPress", "non_target")
            )
        target_side = "left" if rng.random() < 0.5 else "right"
        target = t + delay
        rows.append(_row(target, f"{target_side}_target"))
        rt = float(rng.normal(behaviour.rt_mean, behaviour.rt_std))
        rt = max(rt, 0.25)
        next_start = target + RESPONSE_WINDOW
        wrong = rng.random() < behaviour.p_wrong
        press_side = ({"left": "right", "right": "left"}[target_side]) if wrong else target_side
        if rt < RESPONSE_WINDOW:
            rows.append(
                _row(
                    target + rt, f"{press_side}_buttonPress", "sad_face" if wrong else "smiley_face"
                )
            )
        elif rt < RESPONSE_WINDOW + 1.0 and i < n_trials:
            rows.append(_row(target + rt, f"{press_side}_buttonPress", "non_target"))
        t = next_start
    rows.append(_row(t + float(rng.uniform(4.0, 8.0)), "break cnt"))
    end = t + float(rng.uniform(20.0, 30.0))
    rows.append(_row(end, "9999"))
    table = pd.DataFrame(rows).sort_values("onset", kind="mergesort").reset_index(drop=True)
    return table, float(np.ceil(end + 0.5))


def resting_events(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    """RestingState: 20 s eyes open, 40 s eyes closed, five times, as in the R1 files."""
    rows = [_row(0.0, "break cnt")]
    t0 = float(rng.uniform(1.0, 2.0))
    rows.append(_row(t0, "resting_start"))
    t = t0 + float(rng.uniform(40.0, 48.0))
    for _ in range(5):
        rows.append(_row(t, "instructed_toOpenEyes"))
        rows.append(_row(t + 20.0, "instructed_toCloseEyes"))
        t += 60.0
    rows.append(_row(t, "instructed_toOpenEyes"))
    rows.append(_row(t + 4.5, "break cnt"))
    return pd.DataFrame(rows), float(np.ceil(t + 10.0))


def eyes_closed_mask(events: pd.DataFrame, n_times: int, sfreq: float) -> np.ndarray:
    """Boolean per sample: True between an eyes-closed instruction and the next opening."""
    mask = np.zeros(n_times, dtype=bool)
    closed_at: float | None = None
    for onset, value in zip(
        events["onset"].astype(float), events["value"].astype(str), strict=True
    ):
        if value == "instructed_toCloseEyes":
            closed_at = onset
        elif value == "instructed_toOpenEyes" and closed_at is not None:
            mask[int(closed_at * sfreq) : int(onset * sfreq)] = True
            closed_at = None
    if closed_at is not None:
        mask[int(closed_at * sfreq) :] = True
    return mask
