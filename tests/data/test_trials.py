import numpy as np
import pandas as pd
import pytest

from eegtune.data.trials import build_trial_table, scored_trials
from eegtune.data.tsv import read_events
from tests.conftest import require_shared_metadata


def events(rows):
    return pd.DataFrame([{"onset": o, "value": v, "feedback": f} for o, v, f in rows])


def test_last_trial_dropped_without_end_experiment():
    table = build_trial_table(
        events(
            [
                (1.0, "contrastTrial_start", "n/a"),
                (3.8, "left_target", "n/a"),
                (5.0, "left_buttonPress", "smiley_face"),
                (6.2, "contrastTrial_start", "n/a"),
                (9.0, "right_target", "n/a"),
                (10.0, "right_buttonPress", "smiley_face"),
            ]
        )
    )
    assert len(table) == 1
    assert table.loc[0, "rt_from_stimulus"] == pytest.approx(1.2)


def test_end_experiment_closes_last_trial():
    table = scored_trials(
        events(
            [
                (1.0, "contrastTrial_start", "n/a"),
                (3.8, "right_target", "n/a"),
                (4.5, "left_buttonPress", "sad_face"),
                (7.0, "end_experiment", "n/a"),
            ]
        )
    )
    assert len(table) == 1
    row = table.iloc[0]
    assert row["rt_from_stimulus"] == pytest.approx(0.7)
    assert row["stimulus_side"] == "right" and row["response_side"] == "left"
    assert not row["correct"]


def test_press_before_target_and_after_trial_end_are_not_responses():
    table = build_trial_table(
        events(
            [
                (0.0, "contrastTrial_start", "n/a"),
                (1.0, "left_buttonPress", "non_target"),  # before the target
                (2.8, "left_target", "n/a"),
                (5.2, "contrastTrial_start", "n/a"),
                (5.4, "left_buttonPress", "non_target"),  # belongs to the next trial
                (8.0, "right_target", "n/a"),
                (9.1, "right_buttonPress", "smiley_face"),
                (10.4, "end_experiment", "n/a"),
            ]
        )
    )
    assert table["scored"].tolist() == [False, True]
    assert np.isnan(table.loc[0, "rt_from_stimulus"])
    assert table.loc[1, "rt_from_stimulus"] == pytest.approx(1.1)
    assert bool(table.loc[1, "correct"])


def test_only_first_target_and_first_press_count():
    table = scored_trials(
        events(
            [
                (0.0, "contrastTrial_start", "n/a"),
                (2.0, "left_target", "n/a"),
                (2.5, "right_target", "n/a"),
                (3.0, "left_buttonPress", "smiley_face"),
                (3.5, "right_buttonPress", "sad_face"),
                (6.0, "end_experiment", "n/a"),
            ]
        )
    )
    assert table.iloc[0]["stimulus_onset"] == 2.0
    assert table.iloc[0]["rt_from_stimulus"] == pytest.approx(1.0)


def test_real_r1_metadata_reproduces_official_counts():
    root = require_shared_metadata()
    files = sorted(root.glob("sub-*/eeg/*_task-contrastChangeDetection_*events.tsv"))
    assert len(files) > 250
    rts = np.concatenate(
        [scored_trials(read_events(f))["rt_from_stimulus"].to_numpy() for f in files]
    )
    assert len(rts) == 7316
    assert rts.mean() == pytest.approx(1.5606, abs=5e-5)
