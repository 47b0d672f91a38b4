"""Answer keys from outside the manifest: a file (``kswarm run``) or a ConfigMap (operator).

Either holds JSON or YAML: a list of rows, an object with ``rows``, an object with ``text``, or
plain text. Before a job starts the key is read and inlined into its spec, so the workers that
score the answer never need the file or the Kubernetes API. The key is read once, at the start:
a later edit of the file or ConfigMap does not change a job that has started (a rollout group's
samples are all scored against the same key).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from kswarm.errors import KswarmError, SpecError
from kswarm.spec import AnswerKey, ConfigMapKeyRef, SwarmJobSpec

__all__ = [
    "CONFIG_MAP_FIELD",
    "AnswerKeyNotFound",
    "config_map_ref",
    "inline_answer_key",
    "inline_config_map_key",
    "parse_answer_key",
]

CONFIG_MAP_FIELD = "spec.evaluation.answerKey.configMap"


class AnswerKeyNotFound(KswarmError):
    """The ConfigMap an answer key names, or its key, does not exist (yet)."""


def parse_answer_key(text: str, *, path: str) -> AnswerKey:
    """An inline :class:`AnswerKey` from a key document; errors name ``path``."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(path, f"is neither JSON nor YAML: {e}") from e
    if isinstance(data, dict) and ("rows" in data or "text" in data):
        rows, body = data.get("rows") or [], data.get("text")
    elif isinstance(data, list):
        rows, body = data, None
    elif isinstance(data, str):
        rows, body = [], data
    else:
        raise SpecError(path, "must hold a list of rows, an object with rows or text, or text")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SpecError(path, "rows must be a list of objects")
    return AnswerKey(rows=tuple(rows), text=str(body) if body is not None else None)


def inline_answer_key(spec: SwarmJobSpec, *, base_dir: str) -> SwarmJobSpec:
    """``spec`` with ``evaluation.answerKey.file`` read (relative to ``base_dir``) and inlined."""
    evaluation = spec.evaluation
    key = evaluation.answer_key if evaluation is not None else None
    if evaluation is None or key is None or not key.file:
        return spec
    where = "spec.evaluation.answerKey.file"
    file = key.file if os.path.isabs(key.file) else os.path.join(base_dir, key.file)
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise SpecError(where, f"cannot read {key.file}: {e.strerror}") from e
    return _with_key(spec, parse_answer_key(text, path=where), path=where)


def config_map_ref(spec: SwarmJobSpec) -> ConfigMapKeyRef | None:
    """The ConfigMap key ``spec.evaluation.answerKey.configMap`` names, if any."""
    key = spec.evaluation.answer_key if spec.evaluation is not None else None
    return key.config_map if key is not None else None


def inline_config_map_key(
    spec: SwarmJobSpec, *, namespace: str, data: Mapping[str, str] | None
) -> SwarmJobSpec:
    """``spec`` with its ConfigMap answer key inlined from ``data``, the ConfigMap's ``data``
    (``None``: the ConfigMap does not exist in ``namespace``).

    :class:`AnswerKeyNotFound` when the ConfigMap or its key is missing (the message names
    both); :class:`SpecError` on ``spec.evaluation.answerKey.configMap`` when the content is
    not a key document.
    """
    ref = config_map_ref(spec)
    if ref is None:
        return spec
    where = f"ConfigMap {namespace}/{ref.name}"
    if data is None:
        raise AnswerKeyNotFound(
            f"{CONFIG_MAP_FIELD}: {where} (key {ref.key!r}) does not exist; "
            "the job starts once it does"
        )
    if ref.key not in data:
        keys = ", ".join(sorted(map(repr, data))) or "none"
        raise AnswerKeyNotFound(
            f"{CONFIG_MAP_FIELD}: {where} has no key {ref.key!r} (its keys: {keys}); "
            "the job starts once it does"
        )
    path = f"{CONFIG_MAP_FIELD} ({where}, key {ref.key!r})"
    return _with_key(spec, parse_answer_key(data[ref.key], path=path), path=path)


def _with_key(spec: SwarmJobSpec, loaded: AnswerKey, *, path: str) -> SwarmJobSpec:
    """``spec`` with ``loaded``'s rows and text in its answer key; a key document with
    neither is refused (the scorer would have nothing to compare with)."""
    if not loaded.rows and loaded.text is None:
        raise SpecError(path, "holds no rows and no text")
    evaluation = spec.evaluation
    assert evaluation is not None and evaluation.answer_key is not None
    key = evaluation.answer_key
    inlined = dataclasses.replace(key, rows=loaded.rows or key.rows, text=loaded.text or key.text)
    return dataclasses.replace(spec, evaluation=dataclasses.replace(evaluation, answer_key=inlined))
