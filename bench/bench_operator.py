"""Operator benchmark: 50 SwarmJobs applied at once on the real stack, measured from outside.

The stack is the e2e tests' (``tests/e2e/operator_support.py``): the test control plane, the
Temporal dev server, PostgreSQL, a worker with simulated pools, and the operator as a
subprocess logged in as its ServiceAccount. The API server writes an audit log of that
ServiceAccount's requests only, so the requests the operator made are counted exactly.

Figures, over the 50 jobs (quickstart size, distinct names, one ``kubectl apply``):

* create-to-workflow-started: from the moment the API server announced the new object (the
  benchmark's own watch; ``creationTimestamp`` only has whole seconds) to the workflow's start
  time in Temporal;
* finished-to-status-Succeeded: from the workflow's close time to the moment the watch saw
  ``status.phase: Succeeded``;
* API requests per job: the operator's audited requests during the 50 jobs, divided by 50,
  with a breakdown by verb and resource.

    .venv/bin/python bench/bench_operator.py [--jobs 50] [--status-interval 1.0] [--keep]

Prints the figures and writes bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TESTCP = ROOT / "hack" / "testcp" / "testcp.sh"
PG_SH = ROOT / "hack" / "pg.sh"
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import operator_support as stack  # noqa: E402  (the e2e stack, reused as is)

OPERATOR_USER = "system:serviceaccount:kswarm-system:kswarm-operator"
NAMESPACE = "bench"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


def sh(*cmd: str, timeout: float = 300) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.bin = str(Path(sys.executable).parent / "kubectl")

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done


class PhaseWatch:
    """Watches SwarmJobs in one namespace; remembers when each was added and succeeded."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        api_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.watch = k8s_watch.Watch()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as e:  # the stream ends with an error when stopped mid-chunk
            if not self.stopping:
                print(f"watch ended: {type(e).__name__}: {e}", file=sys.stderr)

    def _follow(self) -> None:
        stream = self.watch.stream(
            self.api.list_namespaced_custom_object,
            "kswarm.dev",
            "v1alpha1",
            self.namespace,
            "swarmjobs",
            timeout_seconds=900,
        )
        for event in stream:
            now = time.time()
            obj = event["object"]
            name = obj["metadata"]["name"]
            with self.lock:
                self.objects[name] = obj
                self.added.setdefault(name, now)
                if obj.get("status", {}).get("phase") == "Succeeded":
                    self.succeeded.setdefault(name, now)

    def count_succeeded(self) -> int:
        with self.lock:
            return len(self.succeeded)

    def stop(self) -> None:
        self.stopping = True
        self.watch.stop()


def quickstart(name: str) -> dict[str, Any]:
    doc = stack.example("quickstart")
    doc["metadata"] = {"name": name, "namespace": NAMESPACE}
    return doc


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def audited_requests(path: Path, since: float, until: float) -> list[dict[str, Any]]:
    """The operator's requests that completed (or, for watches, started) in the window."""
    seen: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("user", {}).get("username") != OPERATOR_USER:
            continue
        t = datetime.fromisoformat(ev["stageTimestamp"]).timestamp()
        if since <= t <= until:
            seen.setdefault(ev["auditID"], ev)
    return list(seen.values())


def breakdown(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for ev in events:
        ref = ev.get("objectRef", {})
        resource = ref.get("resource", ev.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{ev['verb']} {resource}"] += 1
    return dict(counts.most_common())


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="kswarm-bench-operator-"))
    policy = work / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    audit = work / "audit.log"
    cp_dir = work / "cp"
    pg_url = os.environ.get("KSWARM_TEST_POSTGRES_URL") or ""
    pg_dir = None if pg_url else Path(tempfile.mkdtemp(prefix="kswarm-pg-"))
    print("starting the control plane, PostgreSQL, Temporal, the worker ...", flush=True)
    sh(
        "bash",
        str(TESTCP),
        "start",
        str(cp_dir),
        "--",
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit}",
        "--audit-log-format=json",
    )
    try:
        if pg_dir is not None:
            pg_url = sh("bash", str(PG_SH), "start", str(pg_dir)).strip().splitlines()[-1]
        kubectl = Kubectl(cp_dir / "kubeconfig")
        kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        for crd in ("swarmjobs.kswarm.dev", "modelpools.kswarm.dev"):
            kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        stack.apply_operator_identity(kubectl)
        kubectl("create", "namespace", NAMESPACE)
        kubectl("create", "namespace", "warmup")
        with stack.swarm_backend(work / "temporal", pg_url) as backend:
            sa = stack.service_account_kubeconfig(
                kubectl, cp_dir / "kubeconfig", work / "operator-kubeconfig"
            )
            operator = stack.OperatorProcess(
                sa,
                backend,
                work / "operator.log",
                env={"KSWARM_STATUS_INTERVAL": str(args.status_interval)},
            )
            operator.start()
            try:
                return measure(args, kubectl, backend, operator, cp_dir, audit)
            finally:
                operator.stop()
    finally:
        sh("bash", str(TESTCP), "stop", str(cp_dir))
        if args.keep:
            print(f"operator log and audit log kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if pg_dir is not None:
            subprocess.run(["bash", str(PG_SH), "stop", str(pg_dir)], check=False, timeout=120)


def measure(
    args: argparse.Namespace,
    kubectl: Kubectl,
    backend: stack.SwarmBackend,
    operator: stack.OperatorProcess,
    cp_dir: Path,
    audit: Path,
) -> dict[str, Any]:
    # One job first, so the worker, the ledger's pool and the operator's clients are warm.
    warm = quickstart("warmup")
    warm["metadata"]["namespace"] = "warmup"
    kubectl("apply", "-f", "-", input=json.dumps(warm))
    kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/warmup",
        "-n",
        "warmup",
        "--timeout=120s",
        timeout=130,
    )
    time.sleep(2.0)

    watch = PhaseWatch(cp_dir / "kubeconfig", NAMESPACE)
    watch.start()
    time.sleep(1.0)
    names = [f"qs-{i:02d}" for i in range(args.jobs)]
    batch = {"apiVersion": "v1", "kind": "List", "items": [quickstart(n) for n in names]}
    assert operator.proc is not None
    cpu_start = cpu_seconds(operator.proc.pid)
    window_start = time.time()
    kubectl("apply", "-f", "-", input=json.dumps(batch))
    applied = time.time()
    print(f"applied {args.jobs} SwarmJobs in {applied - window_start:.2f}s", flush=True)
    deadline = time.monotonic() + args.timeout
    while watch.count_succeeded() < args.jobs and time.monotonic() < deadline:
        time.sleep(0.5)
    all_done = time.time()
    time.sleep(2.0)  # let the last status writes and events land in the audit log
    window_end = time.time()
    operator_cpu = cpu_seconds(operator.proc.pid) - cpu_start
    watch.stop()
    if watch.count_succeeded() < args.jobs:
        phases = collections.Counter(
            o.get("status", {}).get("phase", "-") for o in watch.objects.values()
        )
        raise SystemExit(
            f"only {watch.count_succeeded()} of {args.jobs} Succeeded: {phases}\n"
            f"{operator.log_tail()}"
        )

    to_start, to_status, durations, runs = [], [], [], 0
    for name in names:
        obj = watch.objects[name]
        wid = obj["status"]["workflowId"]
        desc = backend.describe(wid)
        runs += len(backend.run_ids(wid))
        assert desc.start_time and desc.close_time
        to_start.append(desc.start_time.timestamp() - watch.added[name])
        to_status.append(watch.succeeded[name] - desc.close_time.timestamp())
        durations.append((desc.close_time - desc.start_time).total_seconds())
    requests = audited_requests(audit, window_start, window_end)
    by_agent = collections.Counter(
        "kopf" if ev.get("userAgent", "").startswith("kopf") else "kswarm-operator"
        for ev in requests
    )
    ms = [v * 1000 for v in to_start]
    fs = [v * 1000 for v in to_status]
    return {
        "jobs": args.jobs,
        "status_interval_s": args.status_interval,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "all_succeeded": True,
        "workflow_runs": runs,
        "wall_s": round(all_done - window_start, 2),
        "create_to_workflow_started_ms": {
            "p50": round(percentile(ms, 0.5), 1),
            "p95": round(percentile(ms, 0.95), 1),
            "max": round(max(ms), 1),
            "mean": round(statistics.fmean(ms), 1),
        },
        "finished_to_status_succeeded_ms": {
            "p50": round(percentile(fs, 0.5), 1),
            "p95": round(percentile(fs, 0.95), 1),
            "max": round(max(fs), 1),
            "mean": round(statistics.fmean(fs), 1),
        },
        "workflow_seconds": {
            "p50": round(percentile(durations, 0.5), 2),
            "max": round(max(durations), 2),
        },
        "operator_cpu_s_per_job": round(operator_cpu / args.jobs, 3),
        "api_requests": {
            "total": len(requests),
            "per_job": round(len(requests) / args.jobs, 2),
            "by_client": dict(by_agent),
            "by_verb_and_resource": breakdown(requests),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=50, help="SwarmJobs applied at once (50)")
    p.add_argument(
        "--status-interval",
        type=float,
        default=1.0,
        help="the operator's KSWARM_STATUS_INTERVAL in seconds (1.0, its default)",
    )
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for all jobs")
    p.add_argument("--keep", action="store_true", help="keep the operator and audit logs")
    args = p.parse_args()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(result, indent=2) + "\n")
    s, f, r = (
        result["create_to_workflow_started_ms"],
        result["finished_to_status_succeeded_ms"],
        result["api_requests"],
    )
    print(
        f"{result['jobs']} SwarmJobs, all Succeeded, {result['workflow_runs']} workflow runs, "
        f"{result['wall_s']}s from apply to the last Succeeded"
    )
    d = result["workflow_seconds"]
    print(f"workflow run time (50 at once on this machine): p50 {d['p50']}s, max {d['max']}s")
    print(f"create -> workflow started:   p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms")
    print(f"finished -> status Succeeded: p50 {f['p50']:.0f} ms, p95 {f['p95']:.0f} ms")
    print(f"operator API requests: {r['total']} total, {r['per_job']} per job {r['by_client']}")
    print(f"operator CPU: {result['operator_cpu_s_per_job'] * 1000:.0f} ms per job")
    for key, n in r["by_verb_and_resource"].items():
        print(f"  {n:5d}  {key}")
    print(f"wrote {RESULTS / 'operator.json'}")


if __name__ == "__main__":
    main()
