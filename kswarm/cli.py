"""The ``kswarm`` command: run a job on the embedded stack, or start one long-running part.

kswarm run FILE [--json] [--mode swarm|single] [--time-scale X] [--tools TOOLS.yaml]
    [--serve-model MODEL]
kswarm rollout FILE --samples N --epoch e --epochs E [--json]
kswarm worker | operator | sim | llamacpp | dashboard
kswarm db upgrade|downgrade|check|current|prune
kswarm export JOB|GROUP --format jsonl|atif|tokens
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _cmd_run(ns: argparse.Namespace) -> int:
    from kswarm.running import run_job

    extra = {}
    if ns.fail_503_rate:
        extra["fail_503_rate"] = ns.fail_503_rate
    if ns.hang_rate:
        extra["hang_rate"] = ns.hang_rate
    if ns.behaviour:
        extra["behaviour"] = ns.behaviour
    return run_job(
        ns.file,
        as_json=ns.json,
        mode=ns.mode,
        time_scale=ns.time_scale,
        pools_file=ns.pools,
        replicas=ns.replicas,
        sim_extra=extra,
        tools_file=ns.tools,
        serve_model=ns.serve_model,
    )


def _cmd_rollout(ns: argparse.Namespace) -> int:
    from kswarm.sampling import run_rollout

    return run_rollout(
        ns.file,
        samples=ns.samples,
        epoch=ns.epoch,
        epochs=ns.epochs,
        lambda_start=ns.lambda_start,
        lambda_end=ns.lambda_end,
        temperature=ns.temperature,
        seed=ns.seed,
        as_json=ns.json,
        time_scale=ns.time_scale,
        pools_file=ns.pools,
        replicas=ns.replicas,
    )


def _cmd_worker(ns: argparse.Namespace) -> int:
    from kswarm.errors import ConfigError, LedgerError
    from kswarm.workflows.worker import main as worker_main

    try:
        worker_main()
    except (ConfigError, LedgerError) as e:  # nothing to serve with: say why, exit 2
        print(f"kswarm worker: error: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_sim(ns: argparse.Namespace) -> int:
    from kswarm.sim.serving import run_sim_from_args

    run_sim_from_args(ns)
    return 0


def _cmd_llamacpp(ns: argparse.Namespace) -> int:
    from kswarm.errors import ConfigError
    from kswarm.llm import llamacpp

    try:
        llamacpp.serve(llamacpp.settings_from_args(ns))
    except ConfigError as e:
        print(f"kswarm llamacpp: error: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_operator(ns: argparse.Namespace) -> int:
    from kswarm.operator import main as operator_main

    result = operator_main()
    return int(result) if isinstance(result, int) else 0


DASHBOARD_INSTALL_HINT = "pip install 'kswarm[dashboard]'"
"""What installs the dashboard's dependencies (streamlit, plotly): an extra, left out of the
operator's and worker's image."""


def _cmd_dashboard(ns: argparse.Namespace) -> int:
    import importlib.util

    missing = [m for m in ("streamlit", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"kswarm dashboard: error: {' and '.join(missing)} not installed: the dashboard is "
            f"an extra: {DASHBOARD_INSTALL_HINT} (or run the image "
            "ghcr.io/kswarm/kswarm-dashboard)",
            file=sys.stderr,
        )
        return 2
    from kswarm.dashboard import main as dashboard_main

    return int(dashboard_main(ns.streamlit_args))


def _exporters() -> dict[str, Any]:
    """Export formats for trainers: ATIF trajectories with the known tools' definitions."""
    from kswarm.rollouts.exporting import atif_exporter
    from kswarm.rollouts.token_records import tokens_exporter
    from kswarm.sim import demo_tools

    return {"atif": atif_exporter(demo_tools().openai_specs), "tokens": tokens_exporter()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kswarm", description="Agent swarms on Kubernetes.")
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one SwarmJob on the embedded stack")
    run.add_argument("file", help="SwarmJob manifest (YAML)")
    run.add_argument("--json", action="store_true", help="print one JSON object (CR status keys)")
    run.add_argument("--mode", choices=["swarm", "single"], help="override spec.mode")
    run.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulator time scale: 1 is a real GPU's pace, 0.01 is 100x faster (default 1)",
    )
    run.add_argument("--pools", help="pools YAML with real endpoints instead of the simulator")
    run.add_argument(
        "--tools",
        help="tools YAML: MCP tool servers whose tools the job may name (SERVER__TOOL)",
    )
    run.add_argument(
        "--behaviour",
        metavar="MODULE:FUNCTION",
        help="simulator: the scripted model's behaviour function (for tests and demos)",
    )
    run.add_argument(
        "--serve-model",
        metavar="MODEL",
        help="start `vllm serve MODEL` (GPU, the vllm extra) as the pool, stopped with the run",
    )
    run.add_argument("--replicas", type=int, default=2, help="simulated replicas (default 2)")
    run.add_argument("--fail-503-rate", type=float, default=0.0, help="simulator: 503 rate")
    run.add_argument("--hang-rate", type=float, default=0.0, help="simulator: hung requests")
    run.set_defaults(func=_cmd_run)

    rollout = sub.add_parser("rollout", help="sample one SwarmJob N times and score the group")
    rollout.add_argument("file", help="SwarmJob manifest (YAML) with spec.evaluation")
    rollout.add_argument(
        "--samples", type=int, help="samples in the group (default: spec.rollout, else 8)"
    )
    rollout.add_argument("--epoch", type=int, help="training epoch, from 0 (default 0)")
    rollout.add_argument("--epochs", type=int, help="epochs of the training run (default 1)")
    rollout.add_argument("--lambda-start", type=float, help="λ_aux at epoch 0 (default 0.1)")
    rollout.add_argument("--lambda-end", type=float, help="λ_aux at the last epoch (default 0)")
    rollout.add_argument("--temperature", type=float, help="sampling temperature (default 1)")
    rollout.add_argument("--seed", type=int, help="sample i samples with seed + i (default 0)")
    rollout.add_argument("--json", action="store_true", help="print the group as one JSON object")
    rollout.add_argument("--time-scale", type=float, default=None, help="simulator time scale")
    rollout.add_argument("--pools", help="pools YAML with real endpoints instead of the simulator")
    rollout.add_argument("--replicas", type=int, default=2, help="simulated replicas (default 2)")
    rollout.set_defaults(func=_cmd_rollout)

    worker = sub.add_parser("worker", help="Temporal worker for the job and pool task queues")
    worker.set_defaults(func=_cmd_worker)

    operator = sub.add_parser("operator", help="the Kubernetes operator (kopf)")
    operator.set_defaults(func=_cmd_operator)

    dashboard = sub.add_parser(
        "dashboard",
        help="the Streamlit dashboard",
        description=f"The Streamlit dashboard over the ledger. An extra: {DASHBOARD_INSTALL_HINT}",
    )
    dashboard.add_argument("streamlit_args", nargs="*", help="extra arguments for streamlit")
    dashboard.set_defaults(func=_cmd_dashboard)

    sim = sub.add_parser("sim", help="a simulated vLLM model server")
    from kswarm.sim.serving import add_sim_arguments

    add_sim_arguments(sim)
    sim.set_defaults(func=_cmd_sim)

    llamacpp = sub.add_parser("llamacpp", help="a real llama.cpp model server (CPU)")
    from kswarm.llm.llamacpp import add_llamacpp_arguments

    add_llamacpp_arguments(llamacpp)
    llamacpp.set_defaults(func=_cmd_llamacpp)

    from kswarm import approving
    from kswarm.ledger import commands as ledger_commands
    from kswarm.telemetry import commands as telemetry_commands

    approving.register(sub)
    ledger_commands.register(sub, exporters=_exporters())
    telemetry_commands.register(sub)
    return p


TEMPORAL_COMMANDS = frozenset({"run", "rollout", "worker", "operator", "approve", "deny"})
"""Commands that talk to Temporal (the others never start its runtime)."""


def _forward_temporal_core_logs() -> None:
    """Temporal's core (Rust) writes its warnings to stdout by default, which would break the
    one JSON object of ``--json``; send them through Python's logging (stderr) instead."""
    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
    )
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=config)), error_if_already_set=False
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(ns.log_level).upper(), logging.WARNING))
    if ns.command in TEMPORAL_COMMANDS:
        _forward_temporal_core_logs()
    from kswarm.errors import ConfigError
    from kswarm.telemetry import configure_tracing

    try:
        configure_tracing()  # off unless the OTEL_* variables ask for traces
    except ConfigError as e:
        print(f"kswarm: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(ns.func(ns))


if __name__ == "__main__":
    main()
