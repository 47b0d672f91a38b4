"""kswarm: Kubernetes-native agent swarms on Temporal, with vLLM model pools and an exact ledger."""

__version__ = "0.1.0"
