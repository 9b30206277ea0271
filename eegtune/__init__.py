"""eegtune: distributed hyperparameter search and ensembling for EEG decoding."""

from eegtune.cpu_bf16 import cap_onednn_isa

# Before anything imports torch and runs a convolution: oneDNN fixes its kernels' ISA then.
cap_onednn_isa()

__version__ = "0.1.0"
