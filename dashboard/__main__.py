"""``python -m kswarm.dashboard``: serve the dashboard (what ``kswarm dashboard`` runs)."""

from __future__ import annotations

import sys

from kswarm.dashboard import main

sys.exit(main(sys.argv[1:]))
