"""The CRD schema and the spec types cannot drift: one is the source, the other is checked.

``crds/swarmjobs.yaml`` holds every bound and default; ``kswarm.spec`` validates manifests
against it. These tests walk the schema and the dataclasses side by side: the same fields, the
same defaults, every CEL rule with its Python twin, and the bounds enforced where the two once
disagreed.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

import pytest

from kswarm import schemas
from kswarm.errors import SpecError
from kswarm.spec import SwarmJobSpec, parse_spec


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _pairs(cls: type, schema: dict[str, Any], path: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(field path, dataclass field, its schema)`` for every field, recursively."""
    hints = typing.get_type_hints(cls)
    out = []
    props = schema["properties"]
    assert {_camel(f.name) for f in dataclasses.fields(cls)} == set(props), path
    for f in dataclasses.fields(cls):
        sub = props[_camel(f.name)]
        out.append((f"{path}.{_camel(f.name)}", f, sub))
        hint = hints[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        target = inner[0] if inner else hint
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            out.extend(_pairs(target, sub, f"{path}.{_camel(f.name)}"))
    return out


PAIRS = _pairs(SwarmJobSpec, schemas.crd_schema()["properties"]["spec"], "spec")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize(("path", "f", "sub"), PAIRS, ids=[p for p, _, _ in PAIRS])
def test_every_field_has_the_schema_s_default(path: str, f: Any, sub: dict[str, Any]) -> None:
    default = _default(f)
    if "default" not in sub:
        # No default in the CRD: the field is required there, optional (None/empty) here.
        assert default in (dataclasses.MISSING, None, "", ()), path
        return
    if dataclasses.is_dataclass(default):
        assert sub["default"] == {}, path  # an object defaulted whole, its fields below
        return
    expected = tuple(sub["default"]) if isinstance(default, tuple) else sub["default"]
    assert default == expected, path


def test_a_defaulted_manifest_builds_the_dataclass_defaults() -> None:
    assert parse_spec({"task": "t"}) == SwarmJobSpec(task="t")


def test_every_cel_rule_of_the_crd_has_its_python_twin() -> None:
    rules = {" ".join(r["rule"].split()) for _, r in schemas.cel_rules(schemas.crd_schema())}
    assert rules, "the CRD has CEL rules"
    missing = rules - set(schemas.CEL_RULES) - schemas.KUBERNETES_ONLY_RULES
    assert not missing


@pytest.mark.parametrize(
    ("retry", "error"),
    [
        pytest.param({"initialIntervalSeconds": 0}, "greater than 0", id="zero-is-refused"),
        pytest.param({"initialIntervalSeconds": 0.0005}, None, id="a-tiny-interval-is-fine"),
        pytest.param({"maximumIntervalSeconds": 3601}, "at most 3600", id="cap"),
        pytest.param({"backoffCoefficient": 0.5}, "between 1 and 10", id="shrinking-backoff"),
    ],
)
def test_retry_bounds_are_the_crd_s(retry: dict[str, Any], error: str | None) -> None:
    if error is None:
        assert parse_spec({"task": "t", "retry": retry}).retry.initial_interval_seconds == 0.0005
        return
    with pytest.raises(SpecError, match=error):
        parse_spec({"task": "t", "retry": retry})


def test_an_evaluation_names_a_known_scorer() -> None:
    spec = parse_spec({"task": "t", "evaluation": {"scorer": "corpus-item-f1"}})
    assert spec.evaluation is not None and spec.evaluation.scorer == "corpus-item-f1"
    with pytest.raises(SpecError, match=r"spec\.evaluation\.scorer: must be one of corpus-item-f1"):
        parse_spec({"task": "t", "evaluation": {"scorer": "vibes"}})
    with pytest.raises(SpecError, match=r"spec\.evaluation\.scorer: is required"):
        parse_spec({"task": "t", "evaluation": {}})


@pytest.mark.parametrize(
    "tool",
    [
        pytest.param("search", id="plain"),
        pytest.param("write_note", id="underscore"),
        pytest.param("web-fetch", id="dash"),
        pytest.param("github__create_issue", id="server-tool"),
        pytest.param("docs__search.v2", id="mcp-tool-with-dot"),
        pytest.param("github__*", id="server-allow-list"),
    ],
)
def test_a_tool_name_the_registry_or_a_tool_server_can_offer_is_accepted(tool: str) -> None:
    spec = parse_spec({"task": "t", "tools": [tool], "subagents": {"tools": [tool]}})
    assert spec.tools == (tool,) and spec.subagents.tools == (tool,)


@pytest.mark.parametrize(
    ("tool", "field"),
    [
        pytest.param("web search", "tools", id="space"),
        pytest.param("search()", "tools", id="parentheses"),
        pytest.param("github__", "tools", id="server-without-tool"),
        pytest.param("__search", "subagents.tools", id="tool-without-server"),
        pytest.param("github__a*", "subagents.tools", id="partial-wildcard"),
        pytest.param("*", "subagents.tools", id="bare-wildcard"),
        pytest.param("x" * 129, "tools", id="longer-than-128"),
    ],
)
def test_a_tool_name_that_can_never_exist_is_refused_naming_the_item(tool: str, field: str) -> None:
    raw: dict[str, Any] = {"task": "t"}
    if field == "tools":
        raw["tools"] = ["search", tool]
    else:
        raw["subagents"] = {"tools": ["search", tool]}
    with pytest.raises(SpecError, match=rf"^spec\.{re.escape(field)}\[1\]: ") as e:
        parse_spec(raw)
    assert repr(tool) in str(e.value) or "characters long" in str(e.value)
