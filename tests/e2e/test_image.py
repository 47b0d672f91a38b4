"""The container images run kswarm: its operator, worker, simulator and ledger migrations from
the default target, the dashboard from the dashboard target.

``hack/image.sh build`` builds the Containerfile (cached by its inputs) and every kswarm process
here runs from that image with ``buildah run`` (host network), the way deploy/ runs them:
``kswarm db upgrade`` (the worker's init container) on a fresh PostgreSQL database,
``kswarm sim`` as the default pool, ``kswarm worker`` and ``kswarm operator`` (as the
ServiceAccount of deploy/'s RBAC). The Temporal dev server and the control plane run on
loopback. A SwarmJob applied with kubectl must reach Succeeded.

This module starts its own control plane: the operator of the other e2e tests watches the whole
cluster and would take the job from the image's operator.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from cluster_support import Kube, built
from cluster_support import own_control_plane as own_control_plane_of
from operator_support import (
    EXAMPLES,
    POOLS_CONFIGMAP,
    POOLS_KEY,
    VolumeMirror,
    apply_operator_identity,
    conditions,
    get,
    service_account_kubeconfig,
    wait_for,
)
from sqlalchemy.engine import make_url

from kswarm.devserver import free_port, start_dev_server
from kswarm.errors import KswarmError
from kswarm.ledger import migrating

REPO = Path(__file__).resolve().parents[2]
IMAGE_SH = REPO / "hack" / "image.sh"
# A cold build makes a Debian base and a wheelhouse first (minutes); later builds are cached.
BUILD_TIMEOUT_S = int(os.environ.get("KSWARM_IMAGE_BUILD_TIMEOUT", "1800"))

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 600)


@pytest.fixture(scope="module")
def image() -> str:
    """The image for the current sources (built now unless the cache has it)."""
    return built(IMAGE_SH, BUILD_TIMEOUT_S)


@pytest.fixture(scope="module")
def dashboard_image() -> str:
    """The dashboard target's image (the default image plus the dashboard extra)."""
    return built(IMAGE_SH, BUILD_TIMEOUT_S, "--target", "dashboard")


def in_image(
    *command: str,
    env: dict[str, str] | None = None,
    mounts: tuple[Path, ...] = (),
    target: str = "runtime",
) -> list[str]:
    """The command line that runs ``command`` in a fresh container of the image of ``target``,
    with ``env`` set and each of ``mounts`` bound at the same path (read-only)."""
    opts: list[str] = []
    for key, value in (env or {}).items():
        opts += ["-e", f"{key}={value}"]
    for path in mounts:
        opts += ["-v", f"{path}:{path}:ro"]
    return ["bash", str(IMAGE_SH), "run", "--target", target, *opts, "--", *command]


class Contained:
    """A long-running command in the image, logged to a file; stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def own_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A control plane of this module's own, with the CRDs installed."""
    with own_control_plane_of(tmp_path_factory.mktemp("testcp-image")) as kube:
        yield kube


def fresh_database(server_url: str) -> str:
    """A new, empty database on the test PostgreSQL; its URL."""
    u = make_url(server_url)
    name = f"kswarm_image_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password,
        dbname=u.database or "postgres", autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


def db_upgrade_in_image(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        in_image("kswarm", "db", "upgrade", env={"KSWARM_DATABASE_URL": url}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_the_image_runs_as_user_10001_without_pip_or_compilers(image: str) -> None:
    done = subprocess.run(
        in_image(
            "sh",
            "-c",
            "id -u; id -g; command -v kswarm; for t in pip pip3 gcc cc; do "
            "command -v $t || true; done; ls /opt/kswarm/bin",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.split()
    assert lines[:3] == ["10001", "10001", "/opt/kswarm/bin/kswarm"], done.stdout
    assert not [x for x in lines if x.rsplit("/", 1)[-1] in {"pip", "pip3", "gcc", "cc"}]


def test_the_default_image_leaves_the_dashboard_out_and_names_the_extra(image: str) -> None:
    """Streamlit and its data stack (pandas, pyarrow, numpy) are the dashboard image's only."""
    done = subprocess.run(
        in_image("kswarm", "dashboard"), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'kswarm[dashboard]'" in done.stderr
    probe = subprocess.run(
        in_image(
            "python3", "-c",
            "import importlib.util as u; "
            "print(*[m for m in ('streamlit', 'pandas', 'pyarrow', 'numpy', 'plotly') "
            "if u.find_spec(m)])",
        ),
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == []


def test_the_dashboard_image_serves_the_dashboard(
    dashboard_image: str, postgres_url: str, tmp_path: Path
) -> None:
    """``kswarm dashboard`` from the dashboard image answers Streamlit's health check and
    serves the app's page, reading a ledger at head (as deploy/'s Deployment runs it)."""
    database_url = fresh_database(postgres_url)
    assert db_upgrade_in_image(database_url).returncode == 0
    port = free_port()
    dash = Contained(
        "kswarm dashboard",
        in_image(
            "kswarm", "dashboard",
            env={
                "KSWARM_DATABASE_URL": database_url,
                "KSWARM_DASHBOARD_PORT": str(port),
                "KSWARM_DASHBOARD_ADDRESS": "127.0.0.1",
            },
            target="dashboard",
        ),
        tmp_path / "dashboard.log",
    )  # fmt: skip
    try:
        wait_for(
            "the dashboard from the image to answer /_stcore/health",
            lambda: (dash.assert_alive(), http_ok(f"http://127.0.0.1:{port}/_stcore/health"))[1],
            timeout=180,
            every=0.5,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert "<title>Streamlit</title>" in r.read().decode()
        dash.assert_alive()
    finally:
        dash.stop()
    assert "Traceback" not in dash.tail(), dash.tail()
    # The app's first page, rendered by Streamlit's own app test in the image: every import of
    # the pruned venv works and the page reads the (empty) ledger.
    page = subprocess.run(
        in_image(
            "python3", "-c",
            "import kswarm.dashboard as d; from streamlit.testing.v1 import AppTest; "
            "at = AppTest.from_file(str(d.APP), default_timeout=120).run(); "
            "print([e.message for e in at.exception]); print(at.title[0].value)",
            env={"KSWARM_DATABASE_URL": database_url},
            target="dashboard",
        ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert page.stdout.splitlines()[-2:] == ["[]", "Swarm jobs"], page.stdout


def test_kswarm_db_upgrade_from_the_image_brings_an_empty_ledger_to_head(
    image: str, postgres_url: str
) -> None:
    url = fresh_database(postgres_url)
    with pytest.raises(KswarmError, match="kswarm db upgrade"):
        migrating.check(url)  # empty: the check names the command that fixes it
    done = db_upgrade_in_image(url)
    assert done.returncode == 0, done.stderr
    migrating.check(url)  # at head, and the models agree with the migrations
    # Running it again (each worker pod's init container does) changes nothing.
    assert db_upgrade_in_image(url).returncode == 0
    migrating.check(url)


def test_the_operator_and_worker_from_the_image_run_a_swarmjob_to_succeeded(
    image: str, own_control_plane: Kube, postgres_url: str, tmp_path: Path
) -> None:
    kube = own_control_plane
    database_url = fresh_database(postgres_url)
    upgraded = db_upgrade_in_image(database_url)  # the worker's init container
    assert upgraded.returncode == 0, upgraded.stderr

    # The operator's identity: deploy/'s namespace, ServiceAccounts and RBAC, and a token.
    apply_operator_identity(kube.kubectl)
    sa_kubeconfig = service_account_kubeconfig(
        kube.kubectl, kube.kubeconfig, tmp_path / "operator-kubeconfig"
    )
    sa_kubeconfig.chmod(0o644)  # read by user 10001 in the container

    sim_port, health_port = free_port(), free_port()
    static = tmp_path / "static-pools.yaml"
    static.write_text(
        yaml.safe_dump(
            {
                "pools": [
                    {
                        "name": "default",
                        "model": "kswarm-sim",
                        "replicas": [f"http://127.0.0.1:{sim_port}"],
                        "maxConcurrency": 64,
                    }
                ]
            }
        )
    )
    pools_volume = tmp_path / "pools-volume"  # the worker's view of ConfigMap kswarm-pools
    keys_volume = tmp_path / "pool-keys-volume"
    keys_volume.mkdir()
    for folder in (tmp_path, pools_volume, keys_volume):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)

    running: list[Contained] = []
    mirror = VolumeMirror(kube.kubeconfig, pools_volume)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(_dev_server(tmp_path / "temporal"))
        stack.callback(lambda: [c.stop() for c in reversed(running)])
        common = {
            "KSWARM_TEMPORAL_ADDRESS": server,
            "KSWARM_DATABASE_URL": database_url,
            "KSWARM_LOG_LEVEL": "INFO",
        }
        sim = Contained(
            "kswarm sim",
            in_image(
                "kswarm", "sim", "--host", "127.0.0.1", "--port", str(sim_port),
                "--model", "kswarm-sim", "--time-scale", "0.002",
            ),
            tmp_path / "sim.log",
        )  # fmt: skip
        running.append(sim)
        operator = Contained(
            "kswarm operator",
            in_image(
                "kswarm",
                "operator",
                env={
                    **common,
                    "KUBECONFIG": str(sa_kubeconfig),
                    "KSWARM_STATIC_POOLS": "default",
                    "KSWARM_STATIC_POOLS_FILE": str(static),
                    "KSWARM_OPERATOR_NAMESPACE": "kswarm-system",
                    "KSWARM_POOL_KEYS_DIR": str(keys_volume),
                    "KSWARM_STATUS_INTERVAL": "0.5",
                    "KSWARM_OPERATOR_HEALTH": f"http://127.0.0.1:{health_port}/healthz",
                },
                mounts=(sa_kubeconfig, static),
            ),
            tmp_path / "operator.log",
        )
        running.append(operator)
        mirror.start()
        stack.callback(mirror.stop)
        # The worker starts once the operator has published the pools, as a pod would wait
        # for its ConfigMap volume.
        wait_for(
            "the operator's kswarm-pools ConfigMap in the worker's volume",
            lambda: (operator.assert_alive(), (pools_volume / POOLS_KEY).exists())[1],
            timeout=180,
            every=0.5,
        )
        worker = Contained(
            "kswarm worker",
            in_image(
                "kswarm",
                "worker",
                env={
                    **common,
                    "KSWARM_POOLS_FILE": str(pools_volume / POOLS_KEY),
                    "KSWARM_POOLS_POLL_SECONDS": "0.5",
                },
                mounts=(pools_volume, keys_volume),
            ),
            tmp_path / "worker.log",
        )
        running.append(worker)
        wait_for(
            "the simulator from the image to answer /health",
            lambda: (sim.assert_alive(), http_ok(f"http://127.0.0.1:{sim_port}/health"))[1],
            timeout=120,
            every=0.5,
        )
        wait_for(
            "the operator from the image to answer /healthz",
            lambda: (operator.assert_alive(), http_ok(f"http://127.0.0.1:{health_port}/healthz"))[
                1
            ],
            timeout=120,
            every=0.5,
        )

        namespace = "image"
        kube.kubectl("create", "namespace", namespace)
        kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "quickstart.yaml"))

        def finished() -> dict[str, object] | None:
            for c in running:
                c.assert_alive()
            sj = get(kube, "sj", "quickstart", namespace)
            phase = sj.get("status", {}).get("phase")
            return sj if phase in {"Succeeded", "Failed", "Cancelled"} else None

        try:
            sj = wait_for("the SwarmJob to finish", finished, timeout=240, every=1)
        except AssertionError as e:
            logs = "\n".join(f"--- {c.name}\n{c.tail(2500)}" for c in running)
            raise AssertionError(f"{e}\n{logs}") from None
        status = sj["status"]
        assert isinstance(status, dict)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
        assert conditions(sj)["Succeeded"]["status"] == "True"
        assert status["subagents"]["spawned"] == 4  # the four companies of the quickstart
        assert status["toolCalls"]["total"] > 0
        # The operator published the static pool to the workers' ConfigMap, from the image.
        pools = get(kube, "configmap", POOLS_CONFIGMAP, "kswarm-system")["data"][POOLS_KEY]
        assert "default" in pools
        # The job's model calls went to the simulator in the image, which counts them.
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        served = sum(  # vllm:request_success_total{...,finished_reason="..."} N
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("vllm:request_success_total{")
        )
        assert served >= status["llmCalls"] > 0


@contextlib.contextmanager
def _dev_server(state: Path) -> Iterator[str]:
    """The Temporal dev server on loopback, on its own event loop thread; its address."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    state.mkdir(parents=True, exist_ok=True)
    cm = start_dev_server(state)
    try:
        server = asyncio.run_coroutine_threadsafe(cm.__aenter__(), loop).result(120)
        yield server.address
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cm.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
