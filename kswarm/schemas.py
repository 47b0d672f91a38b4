"""The CRD files in ``crds/`` are the one source of the SwarmJob schema; this module applies it.

``kubectl apply`` has the API server check a SwarmJob against the CRD's OpenAPI schema and fill
in its defaults. ``kswarm run`` and the SDK read the same file (shipped inside the package as
``kswarm/crds``) and do the same here, so a bound or a default is written once:

* the structural checks (types, bounds, enums, lengths, patterns, required fields) run with the
  ``jsonschema`` library; OpenAPI 3.0 schemas are JSON Schema draft 4 (boolean
  ``exclusiveMinimum``), plus ``additionalProperties: false`` wherever a schema lists its
  properties: the API server prunes unknown fields, ``kubectl --validate=strict`` refuses them,
  and so do we;
* defaults are applied as the API server applies them, outside in;
* each CEL rule (``x-kubernetes-validations``) has its Python twin in :data:`CEL_RULES`, keyed by
  the rule's text, so a rule added to the CRD without its twin fails the tests.

Errors are :class:`~kswarm.errors.SpecError` naming the field (``spec.subagents.maxConcurrent``)
and what is allowed.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from typing import Any

import jsonschema
import yaml

from kswarm.errors import SpecError

__all__ = [
    "CEL_RULES",
    "KUBERNETES_ONLY_RULES",
    "apply_defaults",
    "cel_rules",
    "crd_schema",
    "validate",
]


@functools.cache
def crd_schema(plural: str = "swarmjobs") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``crds/<plural>.yaml`` (version v1alpha1)."""
    text = (resources.files("kswarm") / "crds" / f"{plural}.yaml").read_text(encoding="utf-8")
    crd = yaml.safe_load(text)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: Any) -> Any:
    """A copy of ``schema`` where every object that lists properties refuses others."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _validator(plural: str, part: str) -> jsonschema.Draft4Validator:
    schema = _strict(crd_schema(plural)["properties"][part])
    return jsonschema.Draft4Validator(schema)


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does (a copy)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for name, sub in (schema.get("properties") or {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


# --------------------------------------------------------------------------- CEL twins

Rule = Callable[[Any], bool]

CEL_RULES: dict[str, Rule] = {
    "self == oldSelf": lambda _: True,  # immutability: only an update can break it
    "self.trim() != ''": lambda v: not isinstance(v, str) or v.strip() != "",
    "!has(self.initialIntervalSeconds) || !has(self.maximumIntervalSeconds) || "
    "self.maximumIntervalSeconds >= self.initialIntervalSeconds": lambda v: (
        "initialIntervalSeconds" not in v
        or "maximumIntervalSeconds" not in v
        or v["maximumIntervalSeconds"] >= v["initialIntervalSeconds"]
    ),
    "has(self.url) != has(self.command)": lambda v: ("url" in v) != ("command" in v),
    "self.scorer != 'user' || has(self.function)": lambda v: (
        v.get("scorer") != "user" or "function" in v
    ),
    "self.epoch < self.epochs": lambda v: v.get("epoch", 0) < v.get("epochs", 1),
    "!(self.scorer in ['item-f1', 'exact-match']) || has(self.answerKey)": lambda v: (
        v.get("scorer") not in ("item-f1", "exact-match") or "answerKey" in v
    ),
}
"""The Python twin of each CEL rule of the CRDs, keyed by the rule's text."""

KUBERNETES_ONLY_RULES = {"!self.contains('/')"}
"""Rules that hold for SwarmJob objects only: inside Kubernetes a pool is named without its
namespace (the job's own is implied); a manifest for ``kswarm run`` or the SDK may name a pool
``NAMESPACE/NAME`` as the workers know it."""


def cel_rules(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(field path, rule)`` of ``x-kubernetes-validations`` in ``schema``."""
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from cel_rules(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from cel_rules(schema["items"], f"{path}[]")


def _at(value: Any, path: str) -> Iterator[Any]:
    """The values at a dotted path (``[]`` steps into every item of a list)."""
    if not path:
        yield value
        return
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    if not isinstance(value, dict) or key not in value:
        return
    node = value[key]
    for item in node if many and isinstance(node, list) else [node]:
        yield from _at(item, rest)


def _check_cel(value: Any, schema: Mapping[str, Any], root: str) -> None:
    for path, rule in cel_rules(schema):
        text = " ".join(str(rule["rule"]).split())
        if text in KUBERNETES_ONLY_RULES:
            continue
        check = CEL_RULES[text]
        for node in _at(value, path):
            if not check(node):
                where = ".".join(p for p in (root, path, rule.get("fieldPath", "").strip(".")) if p)
                message = str(rule["message"]).removeprefix(f"{where} ")
                raise SpecError(where, message)


# --------------------------------------------------------------------------- errors


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    return names.get(type(v), "mapping" if isinstance(v, dict) else type(v).__name__)


def _bounds(s: Mapping[str, Any]) -> str:
    lo, hi = s.get("minimum"), s.get("maximum")
    if s.get("exclusiveMinimum") and lo is not None:
        return f"greater than {lo:g} and at most {hi:g}" if hi is not None else f"> {lo:g}"
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f"at least {lo:g}" if lo is not None else f"at most {hi:g}"


def _message(e: jsonschema.ValidationError) -> tuple[str, str]:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
    s, v = e.schema if isinstance(e.schema, dict) else {}, e.instance
    match e.validator:
        case "required":
            missing = str(e.message).split("'")[1]
            return f"{path}.{missing}", "is required"
        case "additionalProperties":
            extra = sorted(set(v) - set(s.get("properties") or {}))
            allowed = ", ".join(sorted(s.get("properties") or {}))
            return f"{path}.{extra[0]}", f"unknown field; allowed fields: {allowed}"
        case "type":
            want = str(s.get("type"))
            if want in ("integer", "number") and ("minimum" in s or "maximum" in s):
                return path, f"must be an {want} {_bounds(s)}, got {v!r}".replace(
                    "an number", "a number"
                )
            article = "an" if want[0] in "aeiou" else "a"
            if want == "array":
                item = (s.get("items") or {}).get("type", "value")
                return path, f"must be a list of {item}s, got {_kind(v)}"
            if want == "object":
                return path, f"must be a mapping, got {_kind(v)}"
            return path, f"must be {article} {want}, got {_kind(v)}"
        case "minimum" | "maximum":
            return path, f"must be {_bounds(s)}, got {v!r}"
        case "enum":
            return path, f"must be one of {', '.join(map(str, s['enum']))}, got {v!r}"
        case "minLength" if s.get("minLength") == 1:
            return path, "must be a non-empty string"
        case "minLength" | "maxLength":
            return (
                path,
                f"must be {s.get('minLength', 0)} to {s.get('maxLength', '...')} characters long",
            )
        case "maxItems":
            return path, f"must have at most {s['maxItems']} items, got {len(v)}"
        case "minItems":
            return path, f"must have at least {s['minItems']} items, got {len(v)}"
        case "pattern":
            hint = s.get("description", "")
            return path, f"{v!r} does not match {s['pattern']}" + (f" ({hint})" if hint else "")
        case _:
            return path, str(e.message)


def _without_nulls(value: Any) -> Any:
    """Drop ``key: null`` as the API server does for fields that are not nullable (none here)."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def validate(value: Any, part: str = "spec", plural: str = "swarmjobs") -> dict[str, Any]:
    """Check ``value`` (the ``spec`` of a manifest) against the CRD; it with its defaults."""
    schema = crd_schema(plural)["properties"][part]
    if value is None:
        raise SpecError(part, "is required")
    value = _without_nulls(value)
    errors = sorted(
        _validator(plural, part).iter_errors(value), key=lambda e: list(map(str, e.path))
    )
    if errors:
        # The most specific error first: a wrong field deep inside beats its parent's summary.
        first = max(errors, key=lambda e: len(e.absolute_path))
        path, message = _message(first)
        raise SpecError(f"{part}{path}", message)
    defaulted: dict[str, Any] = apply_defaults(value, schema)
    _check_cel(defaulted, schema, part)
    return defaulted
