"""Answer keys from outside the manifest: a file (``kswarm run``) or a ConfigMap (operator).

Either holds JSON or YAML: a list of rows, an object with ``rows``, an object with ``text``, or
plain text. Before a job starts the key is read and inlined into its spec, so the workers that
score the answer never need the file or the Kubernetes API.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from kswarm.errors import SpecError
from kswarm.spec import AnswerKey, SwarmJobSpec

__all__ = ["inline_answer_key", "parse_answer_key"]


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
    loaded = parse_answer_key(text, path=where)
    inlined = dataclasses.replace(key, rows=loaded.rows or key.rows, text=loaded.text or key.text)
    return dataclasses.replace(spec, evaluation=dataclasses.replace(evaluation, answer_key=inlined))
