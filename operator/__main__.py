"""``python -m kswarm.operator``: the same as ``kswarm operator``."""

import sys

from kswarm.operator.running import main

sys.exit(main())
