"""The data layer: HBN-EEG BIDS releases -> Parquet window store.

Where things happen:

- ``bids``: finding recordings and joining participants.tsv;
- ``signal``: reading a recording through MNE (channels, µV, 100 Hz);
- ``trials``: the official Challenge 1 trial table;
- ``windows``: where Challenge 1 and Challenge 2 windows are cut;
- ``store`` and ``manifest``: the Parquet files and manifest.json;
- ``prepare``: the resumable run over releases;
- ``synthetic``: HBN-shaped synthetic data with a known oracle.
"""

from eegtune.data.errors import DatasetError, RecordingError
from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.store import read_windows
from eegtune.data.trials import build_trial_table, scored_trials

__all__ = [
    "DatasetError",
    "PrepareOptions",
    "RecordingError",
    "build_trial_table",
    "prepare",
    "read_windows",
    "scored_trials",
]
