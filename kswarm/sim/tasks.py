"""The structure of the examples' research tasks, and the score of an answer against the corpus.

A research task is free text plus a few labelled lines that both a scripted model and the
scorer can read::

    Attributes: founded, headquarters, ceo
    Items:
    - Ulmoon Pharma
    - ...

or, for a sequential (deep) task, ``Chain start: Ulmoon Pharma``. :mod:`kswarm.sim.scoring`
scores answers to such tasks against the corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kswarm.answers import answer_rows
from kswarm.sim.corpus import ATTRIBUTES

__all__ = ["ResearchTask", "answer_rows", "parse_task", "subtask_text"]

_ATTR = re.compile(r"^\s*Attributes:\s*(.+)$", re.M)
_CHAIN = re.compile(r"^\s*Chain start:\s*(.+?)\s*$", re.M)
_ITEM = re.compile(r"^\s*-\s+(.+?)\s*$")
_SUBJECT = re.compile(r"the company '([^']+)'")


@dataclass(frozen=True)
class ResearchTask:
    attributes: tuple[str, ...]
    items: tuple[str, ...] = ()
    chain_start: str | None = None
    subject: str | None = None
    """Set for a one-company sub-task as written by :func:`subtask_text`."""


def subtask_text(company: str, attributes: tuple[str, ...]) -> str:
    return (
        f"Find the {', '.join(attributes)} of the company '{company}' using the search tool. "
        f"Answer with one JSON object with the keys entity, {', '.join(attributes)}.\n"
        f"Attributes: {', '.join(attributes)}"
    )


def parse_task(text: str) -> ResearchTask | None:
    m = _ATTR.search(text)
    if not m:
        return None
    attrs = tuple(a.strip() for a in m.group(1).split(",") if a.strip() in ATTRIBUTES)
    if not attrs:
        return None
    subject = _SUBJECT.search(text)
    if subject:
        return ResearchTask(attributes=attrs, subject=subject.group(1))
    chain = _CHAIN.search(text)
    if chain:
        return ResearchTask(attributes=attrs, chain_start=chain.group(1))
    items: list[str] = []
    in_items = False
    for line in text.splitlines():
        if line.strip().startswith("Items:"):
            in_items = True
            continue
        if in_items:
            im = _ITEM.match(line)
            if im:
                items.append(im.group(1))
            elif line.strip():
                in_items = False
    if not items:
        return None
    return ResearchTask(attributes=attrs, items=tuple(items))
