"""HBN-shaped synthetic BIDS data with a known oracle (``eegtune synth``)."""

from eegtune.data.synthetic.generate import SynthOptions, synthesize

__all__ = ["SynthOptions", "synthesize"]
