"""The real stack behind the operator's e2e tests, minus the cluster itself.

* :class:`SwarmBackend`: the Temporal dev server, the ledger on PostgreSQL, simulated pools and
  ``kswarm worker`` (``serve``) on task queue ``kswarm``, all in one asyncio loop on a background
  thread (the tests themselves block on kubectl, which must not stall the worker). The worker
  follows a pools file laid out as a ConfigMap volume; :class:`VolumeMirror` plays the kubelet
  and copies the operator's ``kswarm-pools`` ConfigMap into it, and its ``kswarm-pool-keys``
  Secret into a folder laid out as a Secret volume (the operator's ``KSWARM_POOL_KEYS_DIR``), so
  a ModelPool and its API key reach the worker the way they do in a cluster. One simulated pool,
  ``keyed``, requires an API key (``POOL_KEY``).
* :class:`OperatorProcess`: ``kswarm operator`` (the console script, as deployed) as a
  subprocess, logged in with the token of the ``kswarm-operator`` ServiceAccount bound to
  ``deploy/rbac.yaml``: if the RBAC there lacks a verb the operator uses, these tests fail. A
  test may kill it and start it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from temporalio.client import Client, WorkflowExecutionDescription

from kswarm.config import Settings
from kswarm.devserver import free_port, start_dev_server
from kswarm.ledger import JobCounters, Ledger
from kswarm.llm.pools import PoolConfig, pool_entry
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import SimReplica, start_replicas, stop_replicas
from kswarm.tools.control import STEERING_TOOLS
from kswarm.workflows.pool_workers import PoolWorkers
from kswarm.workflows.worker import serve

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = REPO / "examples"
FAST, SLOW = 0.002, 1.0
"""Simulator time scales: 'default' and 'late-pool' run 500x a GPU's pace, 'slow' runs at it."""
STATIC_POOLS = ("default", "slow")
"""Pools the worker serves that need no ModelPool object (the operator's KSWARM_STATIC_POOLS)."""
SIM_MODEL = "kswarm-sim"
OPERATOR_NAMESPACE = "kswarm-system"
POOLS_CONFIGMAP = "kswarm-pools"
POOLS_KEY = "pools.yaml"
POOL_KEYS_SECRET = "kswarm-pool-keys"
TOOLS_CONFIGMAP, TOOLS_KEY = "kswarm-tools", "tools.yaml"
POOL_KEY = "sk-e2e-first"
"""The API key the 'keyed' simulated pool requires (until a test rotates it)."""
WORKER_POLL_SECONDS = 0.25
"""How often the worker reads its pools file (``KSWARM_POOLS_POLL_SECONDS``)."""

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop on a daemon thread; :meth:`run` waits for one coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="e2e-bg")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@dataclass
class SwarmBackend:
    bg: BackgroundLoop
    temporal_address: str
    database_url: str
    client: Client
    ledger: Ledger
    pool_urls: dict[str, list[str]] = field(default_factory=dict)
    pools_volume: Path = Path()
    """The worker's pools folder, laid out as a ConfigMap volume (``pools.yaml`` in it)."""
    keys_volume: Path = Path()
    """The worker's pool-keys folder, laid out as a Secret volume (``NAMESPACE.NAME`` in it)."""
    keyed: SimReplica | None = None
    """The replica of the 'keyed' pool, which requires an API key."""
    static_pools_file: Path = Path()
    """The operator's KSWARM_STATIC_POOLS_FILE."""
    pool_workers: PoolWorkers | None = None
    """The worker's pool workers: which task queues it polls now."""
    tools_volume: Path = Path()
    """The worker's tools folder, laid out as a ConfigMap volume (``tools.yaml`` in it: the
    operator's ``kswarm-tools``)."""

    @property
    def pools_file(self) -> Path:
        return self.pools_volume / POOLS_KEY

    def polled_queues(self) -> dict[str, str]:
        """Pool name -> task queue, for every pool the worker serves right now."""
        workers = self.pool_workers
        assert workers is not None
        return self.bg.run(_on_loop(lambda: dict(workers.task_queues)))

    def served_pool(self, name: str) -> PoolConfig | None:
        """The config the worker's model calls of pool ``name`` use right now, if served."""
        workers = self.pool_workers
        assert workers is not None
        pools = self.bg.run(_on_loop(lambda: workers.activities.pools))
        return pools.get(name) if name in pools else None

    def describe(self, workflow_id: str) -> WorkflowExecutionDescription:
        return self.bg.run(self.client.get_workflow_handle(workflow_id).describe())

    def run_ids(self, workflow_id: str) -> list[str]:
        """Run ids of every execution with this workflow id, open or closed."""

        async def runs() -> list[str]:
            query = f"WorkflowId = '{workflow_id}'"
            return [w.run_id async for w in self.client.list_workflows(query)]

        return self.bg.run(runs())

    def counters(self, uid: str) -> JobCounters:
        return self.bg.run(self.ledger.job_counters(uid))

    def job(self, uid: str) -> Any:
        return self.bg.run(self.ledger.get_job(uid))


async def _on_loop(fn: Callable[[], T]) -> T:
    return fn()


def write_volume(folder: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``folder`` the way the kubelet updates a ConfigMap volume: a new
    hidden folder, then one atomic swap of the ``..data`` symlink; ``NAME -> ..data/NAME``."""
    folder.mkdir(parents=True, exist_ok=True)
    fresh = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
    fresh.mkdir()
    for name, text in files.items():
        (fresh / name).write_text(text)
    data = folder / "..data"
    old = data.resolve() if data.is_symlink() else None
    tmp = folder / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(fresh.name)
    os.replace(tmp, data)
    for name in files:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for link in folder.iterdir():  # keys that left the object leave the volume
        if not link.name.startswith("..") and link.name not in files and link.is_symlink():
            link.unlink()
    if old is not None and old != fresh.resolve():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def swarm_backend(state_dir: Path, database_url: str) -> Iterator[SwarmBackend]:
    """Temporal, the ledger, the simulated pools and a worker, until the block ends."""
    bg = BackgroundLoop()
    stack = contextlib.AsyncExitStack()
    stop = asyncio.Event()

    async def start() -> SwarmBackend:
        server = await stack.enter_async_context(start_dev_server(state_dir))
        ledger = await Ledger.connect(database_url, migrate=True)
        stack.push_async_callback(ledger.close)
        fast = await start_replicas(2, SimConfig(model=SIM_MODEL, time_scale=FAST))
        slow = await start_replicas(1, SimConfig(model=SIM_MODEL, time_scale=SLOW))
        keyed = await start_replicas(
            1, SimConfig(model=SIM_MODEL, time_scale=FAST, api_key=POOL_KEY)
        )
        stack.push_async_callback(stop_replicas, [*fast, *slow, *keyed])
        urls = {
            "default": [s.url for s in fast],
            "late-pool": [s.url for s in fast],  # served once a ModelPool points at it
            "slow": [s.url for s in slow],
            "keyed": [s.url for s in keyed],  # served once a ModelPool with its key does
        }
        static = [
            pool_entry(
                PoolConfig(name=n, model=SIM_MODEL, replicas=tuple(urls[n]), max_concurrency=256)
            )
            for n in STATIC_POOLS
        ]
        static_text = yaml.safe_dump({"pools": static}, sort_keys=False)
        static_file = state_dir / "static-pools.yaml"
        static_file.write_text(static_text)
        volume = state_dir / "pools-volume"
        write_volume(volume, {POOLS_KEY: static_text})  # until the operator has written its own
        client = await Client.connect(server.address)
        settings = Settings(
            temporal_address=server.address,
            database_url=database_url,
            pools_file=str(volume / POOLS_KEY),
            pools_poll_seconds=WORKER_POLL_SECONDS,
            tools_file=str(state_dir / "tools-volume" / TOOLS_KEY),
        )
        running: asyncio.Future[PoolWorkers] = asyncio.get_running_loop().create_future()
        worker = asyncio.create_task(serve(settings, stop=stop, started=running.set_result))

        async def stop_worker() -> None:
            stop.set()
            await asyncio.wait_for(worker, 60)

        stack.push_async_callback(stop_worker)
        done, _ = await asyncio.wait({running, worker}, return_when=asyncio.FIRST_COMPLETED)
        if worker in done:
            worker.result()  # raises why it ended
        return SwarmBackend(
            bg,
            server.address,
            database_url,
            client,
            ledger,
            urls,
            pools_volume=volume,
            keys_volume=state_dir / "pool-keys-volume",
            keyed=keyed[0],
            static_pools_file=static_file,
            pool_workers=running.result(),
            tools_volume=state_dir / "tools-volume",
        )

    try:
        yield bg.run(start())
    finally:
        try:
            bg.run(stack.aclose(), timeout=60)
        finally:
            bg.close()


def service_account_kubeconfig(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    admin_kubeconfig: Path,
    out: Path,
    *,
    namespace: str = "kswarm-system",
    name: str = "kswarm-operator",
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (TokenRequest API)."""
    token = kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testcp", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "testcp", "user": name}}],
        "current-context": name,
    }
    out.write_text(yaml.safe_dump(config))
    return out


def apply_operator_identity(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The namespace, ServiceAccounts and RBAC of deploy/, for real (not a dry run)."""
    for part in ("namespace.yaml", "serviceaccounts.yaml", "rbac.yaml", "pool-secrets.yaml"):
        kubectl("apply", "-f", str(DEPLOY / part))


def console_script() -> str:
    """The ``kswarm`` console script of this environment: the command deploy/ runs."""
    beside = Path(sys.executable).parent / "kswarm"
    found = str(beside) if beside.exists() else shutil.which("kswarm")
    if not found:
        raise RuntimeError(f"no kswarm console script beside {sys.executable} nor on PATH")
    return found


class OperatorProcess:
    """``kswarm operator`` (the console script, as deploy/ runs it) with the given kubeconfig
    and backend, logging at the level it defaults to there (no ``KSWARM_LOG_LEVEL``)."""

    def __init__(
        self,
        kubeconfig: Path,
        backend: SwarmBackend,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = dict(env or {})
        self.kubeconfig = kubeconfig
        self.backend = backend
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k != "KSWARM_LOG_LEVEL"}
        return {
            **inherited,
            "KUBECONFIG": str(self.kubeconfig),
            "KSWARM_TEMPORAL_ADDRESS": self.backend.temporal_address,
            "KSWARM_DATABASE_URL": self.backend.database_url,
            "KSWARM_STATIC_POOLS": ",".join(STATIC_POOLS),
            "KSWARM_STATIC_POOLS_FILE": str(self.backend.static_pools_file),
            "KSWARM_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "KSWARM_POOL_KEYS_DIR": str(self.backend.keys_volume),
            "KSWARM_POOLS_RESYNC": "2",
            "KSWARM_STATUS_INTERVAL": "0.5",
            "KSWARM_POOL_RETRY_SECONDS": "1",
            "KSWARM_POOL_PROBE_INTERVAL": "1",
            "KSWARM_CANCEL_TIMEOUT": "20",
            "KSWARM_OPERATOR_HEALTH": f"http://127.0.0.1:{self.port}/healthz",
            **self.extra_env,
        }

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== operator start {self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [console_script(), "operator"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(REPO),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        mark = f"operator start {self.starts} ====="
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            text = self.log_path.read_text(errors="replace")
            if "operator started" in text.rsplit(mark, 1)[-1] and self._healthy():
                return
            time.sleep(0.2)
        raise AssertionError(f"the operator did not start in {timeout}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies under the operator."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class VolumeMirror:
    """Plays the kubelet for the worker: copies a ConfigMap's or a Secret's data into a volume
    folder.

    A thread reads the object every ``every`` seconds (as the cluster admin) and, when its data
    changed, writes it with :func:`write_volume`. ``copies`` counts the writes. A Secret that
    does not exist is an empty volume (the worker mounts it with ``optional: true``).
    """

    def __init__(
        self,
        kubeconfig: Path,
        volume: Path,
        *,
        kind: str = "ConfigMap",
        namespace: str = OPERATOR_NAMESPACE,
        name: str = POOLS_CONFIGMAP,
        every: float = 0.2,
    ) -> None:
        self.api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        )
        self.volume, self.namespace, self.name, self.every = volume, namespace, name, every
        self.kind = kind
        self.copies = 0
        self.last: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"{kind}-mirror")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _read(self) -> dict[str, str] | None:
        try:
            if self.kind == "Secret":
                secret = self.api.read_namespaced_secret(self.name, self.namespace)
                return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            cm = self.api.read_namespaced_config_map(self.name, self.namespace)
        except kubernetes.client.ApiException as e:
            if self.kind == "Secret" and e.status == 404:
                return {}
            return None  # not written yet
        return dict(cm.data or {})

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            data = self._read()
            if data is None or data == self.last or (not data and self.kind == "ConfigMap"):
                continue
            write_volume(self.volume, data)
            self.last = data
            self.copies += 1


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))


def on_pool(manifest: dict[str, Any], pool: str, name: str | None = None) -> dict[str, Any]:
    """A copy of a SwarmJob manifest whose orchestrator and sub-agents use ``pool``."""
    m = json.loads(json.dumps(manifest))
    if name:
        m["metadata"]["name"] = name
    m["spec"].setdefault("orchestrator", {})["pool"] = pool
    m["spec"].setdefault("subagents", {})["pool"] = pool
    return m


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60, every: float = 0.2
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------- kubectl helpers


def get(cp: Any, kind: str, name: str, namespace: str) -> dict[str, Any]:
    out = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def apply(cp: Any, manifest: dict[str, Any], namespace: str) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def events(cp: Any, name: str, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    return list(json.loads(out)["items"])


def assert_status_matches_ledger(status: dict[str, Any], swarm: SwarmBackend, uid: str) -> None:
    counters = swarm.counters(uid)
    job = swarm.job(uid)
    control = sum(n for tool, n in counters.by_tool.items() if tool in STEERING_TOOLS)
    assert status["toolCalls"] == {
        "total": counters.tool_calls_total - control,
        "failed": counters.tool_calls_failed + counters.tool_calls_refused,
        "deduplicated": counters.tool_calls_deduplicated,
    }
    assert status["llmCalls"] == counters.llm_calls
    assert status["tokens"] == {"input": counters.tokens_input, "output": counters.tokens_output}
    assert job is not None and job.phase == status["phase"]
    assert status["criticalSteps"] == job.critical_steps
    assert status["totalSteps"] == job.total_steps
    assert status["speedup"] == job.speedup
    assert status["subagents"]["spawned"] == job.report["subagents"]["spawned"]
    assert status["subagents"]["succeeded"] == job.report["subagents"]["succeeded"]
    assert status["result"] and len(status["result"]) <= 4096
    assert (job.result or "").startswith(status["result"][:200])
