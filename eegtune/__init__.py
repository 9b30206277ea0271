"""eegtune: distributed hyperparameter search and ensembling for EEG decoding."""

__version__ = "0.1.0"
