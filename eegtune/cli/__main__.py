"""``python -m eegtune.cli``."""

import sys

from eegtune.cli import main

sys.exit(main())
