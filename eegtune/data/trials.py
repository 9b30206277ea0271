"""The Challenge 1 trial table: the official definition over a CCD events table.

This reproduces eegdash's ``build_trial_table`` (see CHALLENGE.md):

- a trial runs from one ``contrastTrial_start`` to the next; the last trial is closed by
  ``end_experiment`` when present, otherwise it is dropped;
- the stimulus is the first ``*_target`` inside the trial;
- the response is the first ``*_buttonPress`` at or after the stimulus and before the
  trial ends;
- ``rt_from_stimulus = response_onset - stimulus_onset`` (seconds) is the label;
- ``correct`` is ``feedback == "smiley_face"`` on the response row.

It is written over numpy arrays with ``searchsorted`` rather than a row loop, because
``prepare`` calls it once per CCD run over thousands of recordings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eegtune.errors import ConfigError

TRIAL_START = "contrastTrial_start"
END_EXPERIMENT = "end_experiment"
TARGETS = ("left_target", "right_target")
PRESSES = ("left_buttonPress", "right_buttonPress")

TRIAL_COLUMNS = [
    "trial_index",
    "trial_start",
    "trial_end",
    "stimulus_onset",
    "stimulus_side",
    "response_onset",
    "response_side",
    "rt_from_stimulus",
    "correct",
    "scored",
]


def _first_at_or_after(onsets: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Index of the first element of sorted ``onsets`` that is >= each ``lower``."""
    return np.searchsorted(onsets, lower, side="left")


def build_trial_table(events: pd.DataFrame) -> pd.DataFrame:
    """Return one row per CCD trial; ``scored`` marks the trials that carry a label.

    ``events`` needs the BIDS columns ``onset`` and ``value``; ``feedback`` is optional
    (missing means no trial is ``correct``). Unscored trials (no stimulus or no response)
    are kept with NaN times so that callers can report how many were dropped.
    """
    if "onset" not in events.columns or "value" not in events.columns:
        raise ConfigError("events table needs 'onset' and 'value' columns")
    ev = events.sort_values("onset", kind="mergesort")
    onset = pd.to_numeric(ev["onset"], errors="coerce").to_numpy(dtype=float)
    value = ev["value"].astype(str).to_numpy()
    feedback = (
        ev["feedback"].astype(str).to_numpy()
        if "feedback" in ev.columns
        else np.full(len(ev), "n/a", dtype=object)
    )

    starts = onset[value == TRIAL_START]
    ends_exp = onset[value == END_EXPERIMENT]
    if len(starts) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in TRIAL_COLUMNS})

    trial_end = np.empty_like(starts)
    trial_end[:-1] = starts[1:]
    # The last trial is only closed by an end_experiment marker after its start.
    closing = ends_exp[ends_exp >= starts[-1]]
    trial_end[-1] = closing[0] if len(closing) else np.nan
    keep = ~np.isnan(trial_end)
    starts, trial_end = starts[keep], trial_end[keep]
    n = len(starts)

    is_target = np.isin(value, TARGETS)
    t_on, t_val = onset[is_target], value[is_target]
    is_press = np.isin(value, PRESSES)
    p_on, p_val, p_fb = onset[is_press], value[is_press], feedback[is_press]

    stim_onset = np.full(n, np.nan)
    stim_side = np.full(n, None, dtype=object)
    ti = _first_at_or_after(t_on, starts)
    has_stim = ti < len(t_on)
    has_stim[has_stim] = t_on[ti[has_stim]] < trial_end[has_stim]
    stim_onset[has_stim] = t_on[ti[has_stim]]
    stim_side[has_stim] = [v.split("_")[0] for v in t_val[ti[has_stim]]]

    resp_onset = np.full(n, np.nan)
    resp_side = np.full(n, None, dtype=object)
    correct = np.zeros(n, dtype=bool)
    pi = _first_at_or_after(p_on, np.where(has_stim, stim_onset, np.inf))
    has_resp = has_stim & (pi < len(p_on))
    has_resp[has_resp] = p_on[pi[has_resp]] < trial_end[has_resp]
    resp_onset[has_resp] = p_on[pi[has_resp]]
    resp_side[has_resp] = [v.split("_")[0] for v in p_val[pi[has_resp]]]
    correct[has_resp] = p_fb[pi[has_resp]] == "smiley_face"

    return pd.DataFrame(
        {
            "trial_index": np.arange(n, dtype=np.int32),
            "trial_start": starts,
            "trial_end": trial_end,
            "stimulus_onset": stim_onset,
            "stimulus_side": stim_side,
            "response_onset": resp_onset,
            "response_side": resp_side,
            "rt_from_stimulus": resp_onset - stim_onset,
            "correct": correct,
            "scored": has_resp,
        }
    )


def scored_trials(events: pd.DataFrame) -> pd.DataFrame:
    """Only the trials that carry a Challenge 1 label."""
    table = build_trial_table(events)
    return table[table["scored"]].reset_index(drop=True)
