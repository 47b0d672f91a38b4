"""The kswarm dashboard: Streamlit pages over the ledger (``kswarm dashboard`` runs :func:`main`).

Pages: Overview (jobs, filters, totals over time), Job (timeline with the critical path, stages,
tool-call ledger with approvals, messages, swarm against single), Pools (load, latency, errors
per replica), Tool servers (calls, errors, latency, side effects and approvals per MCP server),
Rollouts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["APP", "main", "streamlit_args"]

APP = Path(__file__).resolve().with_name("app.py")
DEFAULT_PORT = 8501


def streamlit_args(port: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """Arguments of ``streamlit run``: ``app.py``, headless, on ``port`` (default
    ``KSWARM_DASHBOARD_PORT``, else 8501) and ``KSWARM_DASHBOARD_ADDRESS`` when set."""
    env = os.environ
    port = port if port is not None else int(env.get("KSWARM_DASHBOARD_PORT") or DEFAULT_PORT)
    args = ["run", str(APP), "--server.headless", "true", "--server.port", str(port)]
    args += ["--browser.gatherUsageStats", "false"]
    if env.get("KSWARM_DASHBOARD_ADDRESS"):
        args += ["--server.address", env["KSWARM_DASHBOARD_ADDRESS"]]
    return [*args, *extra]


def main(argv: Sequence[str] = ()) -> int:
    """Serve the dashboard in this process until interrupted; return the exit code."""
    from streamlit.web import cli

    try:
        cli.main(args=streamlit_args(extra=argv), prog_name="streamlit", standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:
        return 0
    return 0
