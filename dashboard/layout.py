"""What every page shares: the live-refresh controls and the formatting of numbers.

Live refresh is a sidebar toggle and an interval; pages run their data sections as
``st.fragment(run_every=...)`` with :func:`refresh_every`, so only those sections rerun and the
filters above them keep their state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st

__all__ = ["live", "refresh_every", "seconds", "sidebar"]

INTERVALS = (2, 5, 10, 30, 60)


def sidebar() -> None:
    """The controls of ``app.py``'s sidebar."""
    st.sidebar.toggle("Live refresh", value=True, key="live.on", help="Rerun the data every few s")
    st.sidebar.select_slider(
        "Every (s)", options=INTERVALS, value=5, key="live.every", disabled=not live_on()
    )
    st.sidebar.caption("Reads the ledger; set KSWARM_DATABASE_URL to point elsewhere.")


def live_on() -> bool:
    return bool(st.session_state.get("live.on", True))


def refresh_every() -> float | None:
    """Seconds between reruns of live sections; ``None`` when live refresh is off."""
    return float(st.session_state.get("live.every", 5)) if live_on() else None


def live(body: Callable[..., None], *args: Any, key: str) -> None:
    """Run ``body(*args)`` as a fragment that reruns every :func:`refresh_every` seconds."""
    st.fragment(body, run_every=refresh_every(), key=key)(*args)


def seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"
