"""The ``vllm serve`` command line per model family, and ``--serve-model`` without vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from kswarm import running
from kswarm.llm import vllm

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(
    ("model", "parser"),
    [
        pytest.param("Qwen/Qwen2.5-7B-Instruct", "hermes", id="qwen"),
        pytest.param("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder", id="qwen3-coder"),
        pytest.param("NousResearch/Hermes-3-Llama-3.1-8B", "hermes", id="hermes-before-llama"),
        pytest.param("meta-llama/Llama-3.1-8B-Instruct", "llama3_json", id="llama-3"),
        pytest.param("meta-llama/Llama-4-Scout-17B-16E", "llama4_pythonic", id="llama-4"),
        pytest.param("mistralai/Mistral-Small-24B-Instruct", "mistral", id="mistral"),
        pytest.param("moonshotai/Kimi-K2-Instruct", "kimi_k2", id="kimi-k2"),
        pytest.param("deepseek-ai/DeepSeek-V3", "deepseek_v3", id="deepseek-v3"),
        pytest.param("ibm-granite/granite-3.1-8b-instruct", "granite", id="granite"),
        pytest.param("openai/gpt-oss-20b", "openai", id="gpt-oss"),
        pytest.param("some/unknown-model", "hermes", id="unknown"),
    ],
)
def test_the_command_has_prefix_caching_auto_tool_choice_and_the_family_s_parser(
    model: str, parser: str
) -> None:
    cmd = vllm.serve_command(model, host="127.0.0.1", port=8011)
    assert cmd[1:3] == ["serve", model]
    assert cmd[3:] == [
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
        "--enable-prefix-caching",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        parser,
    ]


def test_extra_arguments_come_last_and_a_parser_there_replaces_ours() -> None:
    args = vllm.serve_arguments(
        "Qwen/Qwen2.5-7B-Instruct",
        host="0.0.0.0",
        port=8000,
        extra=["--tool-call-parser=pythonic", "--max-model-len", "8192"],
    )
    assert "hermes" not in args
    assert args[-3:] == ["--tool-call-parser=pythonic", "--max-model-len", "8192"]


def test_serve_model_without_vllm_exits_2_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """vLLM needs a GPU and is not installed here; where it is, the check is made to fail
    the same way (the seam is ``vllm_installed``), so the message is tested everywhere."""
    monkeypatch.setattr(vllm, "vllm_installed", lambda: False)
    code = running.run_job(str(EXAMPLES / "quickstart.yaml"), serve_model="Qwen/Qwen2.5-7B")
    assert code == 2
    assert "pip install 'kswarm[vllm]'" in capsys.readouterr().err


def test_serve_model_and_pools_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = running.run_job(
        str(EXAMPLES / "quickstart.yaml"), serve_model="m", pools_file=str(tmp_path / "p.yaml")
    )
    assert code == 2
    assert "--serve-model and --pools: give one of them" in capsys.readouterr().err
