"""The package's public surface: everything in ``__all__`` exists and nothing else leaks."""

from __future__ import annotations

import kswarm.llm


def test_exports_exactly_the_public_names() -> None:
    public = {n for n in vars(kswarm.llm) if not n.startswith("_") and n != "annotations"}
    modules = {n for n in public if type(getattr(kswarm.llm, n)).__name__ == "module"}
    assert set(kswarm.llm.__all__) == public - modules
    assert sorted(kswarm.llm.__all__) == list(kswarm.llm.__all__)
