"""kswarm's payload converter decodes exactly what Temporal's default converter decodes."""

from __future__ import annotations

import copy
import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.converter import DataConverter, DefaultPayloadConverter

from kswarm.converter import PayloadConverter, data_converter
from kswarm.spec import RetrySpec, parse_manifest
from kswarm.telemetry.interceptors import temporal_plugins
from kswarm.workflows import inputs as wi
from kswarm.workflows.approvals import ApprovalRecord, ToolCallDecision

SPEC = parse_manifest(
    {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "SwarmJob",
        "metadata": {"name": "conv", "uid": "u1"},
        "spec": {"task": "find things", "limits": {"maxTokens": 1000}},
    }
).spec

VALUES: list[Any] = [
    wi.SwarmJobInput(name="conv", namespace="default", uid="u1", spec=SPEC),
    wi.ModelStepInput(
        job_uid="u1",
        agent_id="u1/a",
        role="subagent",
        step=2,
        pool="default",
        model="kswarm-sim",
        tools=["search"],
        max_tool_calls=1500,
        max_tokens=None,
        retry=RetrySpec(max_attempts=4),
        stage=1,
        final_turn=False,
    ),
    wi.ModelStepResult(
        step=2,
        tool_calls=[wi.ToolCallRef(index=0, name="search", kind="tool", local=True)],
        spawns=[wi.SpawnRef(call_index=0, agent_id="u1/s", name="s")],
        final=False,
        input_tokens=10,
        output_tokens=5,
        model_seconds=0.5,
        latency_seconds=0.6,
        budget_exhausted=None,
    ),
    wi.SwarmJobResult(
        name="conv",
        uid="u1",
        phase="Succeeded",
        reason=None,
        critical_steps=4,
        total_steps=7,
        speedup=1.75,
        subagents_spawned=2,
        subagents_succeeded=2,
        subagents_failed=0,
        model_seconds=1.0,
        wall_seconds=1.5,
        quality=0.5,
        result="answer",
        stages=[
            wi.StageSummary(
                stage=1, main_steps=1, max_subagent_steps=3, subagents=2, model_seconds=1.0
            )
        ],
    ),
    wi.ToolBatchInput(
        calls=[
            wi.ToolCallInput(job_uid="u1", agent_id="u1/a", step=1, index=i, tool="search")
            for i in range(3)
        ],
        max_attempts=2,
    ),
    ApprovalRecord(
        job_uid="u1",
        agent_id="u1/a",
        step=1,
        index=0,
        decision=ToolCallDecision(call="u1/u1/a/1/0", approved=True, by="ana", reason="ok"),
        at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    ),
]


def test_encodes_byte_for_byte_as_temporal_does_without_its_deep_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dataclasses nested in lists and dicts, datetimes, sets and tuples in them: the same JSON."""

    @dataclasses.dataclass
    class Inner:
        tags: set[str]
        pair: tuple[int, str]
        at: datetime

    @dataclasses.dataclass
    class Outer:
        inner: list[Inner]
        by_name: dict[str, Inner]
        extra: dict[str, Any]
        nothing: None = None

    inner = Inner({"x"}, (1, "a"), datetime(2026, 1, 1, tzinfo=UTC))
    value = Outer([inner, inner], {"k": inner}, {"deep": [{"n": 1.5}], "s": "é"})
    default, ours = DefaultPayloadConverter(), PayloadConverter()
    assert ours.to_payloads([value]) == default.to_payloads([value])
    monkeypatch.setattr(copy, "deepcopy", None)  # what dataclasses.asdict calls
    with pytest.raises(TypeError):
        default.to_payloads([value])
    assert ours.to_payloads([value])  # never copies


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_decodes_as_the_default_converter(value: Any) -> None:
    default, ours = DefaultPayloadConverter(), PayloadConverter()
    payloads = default.to_payloads([value])
    assert ours.to_payloads([value]) == payloads
    decoded = ours.from_payloads(payloads, [type(value)])[0]
    assert decoded == default.from_payloads(payloads, [type(value)])[0] == value
    assert type(decoded) is type(value)


def test_bad_payloads_fail_as_in_temporal() -> None:
    ours, default = PayloadConverter(), DefaultPayloadConverter()
    payloads = default.to_payloads([{"job_uid": "u1", "step": "not a number"}])
    with pytest.raises(Exception, match="step"):
        ours.from_payloads(payloads, [wi.ToolCallInput])
    missing = default.to_payloads([{"job_uid": "u1"}])
    with pytest.raises(TypeError):
        ours.from_payloads(missing, [wi.ToolCallInput])


def test_clients_get_it_through_the_plugin_and_keep_a_custom_one() -> None:
    (plugin, *_) = temporal_plugins(metrics=False)
    config: Any = {"data_converter": DataConverter.default}
    configured = plugin.configure_client(config)
    assert configured["data_converter"].payload_converter_class is PayloadConverter
    custom = dataclasses.replace(DataConverter.default, payload_converter_class=PayloadConverter)
    assert data_converter(custom) is custom


@dataclasses.dataclass
class _Fresh:
    """A class no other test decodes, so its hints are resolved here first."""

    name: str
    count: int


def test_converters_made_per_activation_share_the_hints_resolved_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Temporal makes a payload converter per workflow activation (``DataConverter`` is
    rebuilt for each): the hints of a class are still resolved once per process."""
    resolved: list[type] = []
    real = typing.get_type_hints

    def counting(cls: Any) -> Any:
        resolved.append(cls)
        return real(cls)

    monkeypatch.setattr(typing, "get_type_hints", counting)
    payloads = DefaultPayloadConverter().to_payloads([_Fresh("a", 1)])
    for _ in range(3):
        converter = DataConverter(payload_converter_class=PayloadConverter).payload_converter
        assert converter.from_payloads(payloads, [_Fresh]) == [_Fresh("a", 1)]

    assert resolved == [_Fresh]
