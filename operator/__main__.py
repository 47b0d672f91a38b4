"""``python -m kswarm.operator``: the same as ``kswarm operator``."""

from kswarm.operator.running import main

main()
