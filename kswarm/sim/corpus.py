"""A deterministic research corpus: fictional companies, the documents that describe them, and
the ground truth that scores answers.

The examples' tasks (wide search over ~100 companies, a deep chain of parent companies) are
about this corpus, so a job's ``quality`` is measured against facts that the ``search`` tool can
actually find. Same seed, same corpus, on every machine; nothing is downloaded.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

__all__ = ["ATTRIBUTES", "Company", "Corpus", "Document", "build_corpus", "default_corpus"]

DEFAULT_SEED = 7
DEFAULT_SIZE = 160

ATTRIBUTES = ("founded", "headquarters", "ceo", "employees", "parent")

_STEMS = (
    "Arven Bore Cala Dorn Elst Fenw Garr Hale Istr Jorv Kest Lumn Morr Nesk Orvi Pell Quar Rask "
    "Selv Tarn Ulmo Vask Wend Xyl Yarr Zent Brig Crow Dusk Ember Frost Glen Harb Ivor Juno Kell"
).split()
_ENDS = "ix ia on ar is um ex ora ent ica".split()
_KINDS = (
    "Systems Dynamics Labs Holdings Robotics Foods Energy Logistics Textiles Analytics Optics "
    "Materials Pharma Networks Mining Aerospace"
).split()
_CITIES = (
    "Lisbon Oslo Porto Tallinn Ghent Krakow Turin Bergen Lyon Utrecht Aarhus Graz Brno Malmo "
    "Tampere Cork Bilbao Leipzig Basel Split Riga Vilnius Seville Bremen"
).split()
_FIRST = "Maria Jonas Aiko Rafael Ingrid Tomas Lena Omar Sofia Pavel Nadia Erik Chen Amara".split()
_LAST = "Chen Okafor Lindqvist Moreau Novak Haddad Silva Kowalski Berg Tanaka Rossi Varga".split()


@dataclass(frozen=True)
class Company:
    name: str
    founded: int
    headquarters: str
    ceo: str
    employees: int
    parent: str | None

    def fact(self, attribute: str) -> str:
        value = getattr(self, attribute)
        if attribute == "parent":
            return value or "none"
        return str(value)


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Corpus:
    seed: int
    companies: tuple[Company, ...]
    documents: tuple[Document, ...]

    @functools.cached_property
    def by_name(self) -> dict[str, Company]:
        return {c.name: c for c in self.companies}

    def chain(self, start: str) -> list[Company]:
        """``start`` and its parents up to the top-level parent."""
        out: list[Company] = []
        c: Company | None = self.by_name[start]
        while c is not None and c not in out:
            out.append(c)
            c = self.by_name.get(c.parent) if c.parent else None
        return out

    def deepest_chain_start(self) -> str:
        return max(self.companies, key=lambda c: (len(self.chain(c.name)), c.name)).name


def _names(rng: random.Random, n: int, taken: frozenset[str] = frozenset()) -> list[str]:
    seen: set[str] = set(taken)
    out: list[str] = []
    while len(out) < n:
        name = f"{rng.choice(_STEMS)}{rng.choice(_ENDS)} {rng.choice(_KINDS)}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def build_corpus(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> Corpus:
    rng = random.Random(seed)
    names = _names(rng, size)
    companies: list[Company] = []
    for i, name in enumerate(names):
        # Parents point to later companies only, so chains are acyclic; the first ~12
        # companies form one deep chain for the deep-research example.
        parent: str | None = None
        if i < 12:
            parent = names[i + 1] if i < 11 else None
        elif rng.random() < 0.4:
            parent = names[rng.randrange(max(i + 1, 13), size)] if i + 1 < size else None
        companies.append(
            Company(
                name=name,
                founded=rng.randint(1921, 2019),
                headquarters=rng.choice(_CITIES),
                ceo=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                employees=rng.randrange(40, 90_000, 10),
                parent=parent,
            )
        )
    docs: list[Document] = []
    for n, c in enumerate(companies):
        other = companies[(n * 7 + 3) % size]
        texts = [
            (
                f"{c.name} history",
                f"{c.name} was founded in {c.founded}. It grew from a workshop into a firm "
                f"of {c.employees} people.",
            ),
            (
                f"{c.name} offices",
                f"{c.name} is headquartered in {c.headquarters}. Its regional office competes "
                f"with {other.name} for engineering talent.",
            ),
            (
                f"{c.name} leadership",
                f"The chief executive of {c.name} is {c.ceo}. The board meets in "
                f"{c.headquarters} each quarter.",
            ),
            (
                f"{c.name} ownership",
                f"{c.name} is a subsidiary of {c.parent}."
                if c.parent
                else f"{c.name} has no parent company; it is independent.",
            ),
            (
                f"Industry notes on {c.name.split()[1]}",
                f"Analysts compare {c.name} with {other.name}; {other.name} employs "
                f"{other.employees} people and was founded in {other.founded}.",
            ),
        ]
        for j, (title, text) in enumerate(texts):
            docs.append(Document(id=f"doc-{n:04d}-{j}", title=title, text=text))
    return Corpus(seed=seed, companies=tuple(companies), documents=tuple(docs))


def extend_corpus(base: Corpus, extra: int, seed: int) -> Corpus:
    """``base`` and ``extra`` more independent companies (no parents), drawn from ``seed``; the
    companies and documents of ``base`` stay exactly as they were."""
    rng = random.Random(seed)
    names = _names(rng, extra, frozenset(base.by_name))
    added = tuple(
        Company(
            name=name,
            founded=rng.randint(1921, 2019),
            headquarters=rng.choice(_CITIES),
            ceo=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            employees=rng.randrange(40, 90_000, 10),
            parent=None,
        )
        for name in names
    )
    companies = base.companies + added
    docs = list(base.documents)
    for n, c in enumerate(added, start=len(base.companies)):
        other = companies[(n * 7 + 3) % len(companies)]
        texts = [
            (f"{c.name} history", f"{c.name} was founded in {c.founded}."),
            (f"{c.name} offices", f"{c.name} is headquartered in {c.headquarters}."),
            (f"{c.name} leadership", f"The chief executive of {c.name} is {c.ceo}."),
            (f"{c.name} ownership", f"{c.name} has no parent company; it is independent."),
            (
                f"Industry notes on {c.name.split()[1]}",
                f"Analysts compare {c.name} with {other.name}; {other.name} was founded in "
                f"{other.founded}.",
            ),
        ]
        for j, (title, text) in enumerate(texts):
            docs.append(Document(id=f"doc-{n:04d}-{j}", title=title, text=text))
    return Corpus(seed=base.seed, companies=companies, documents=tuple(docs))


EXTRA_SIZE = 240
"""Independent companies beyond the first ``DEFAULT_SIZE``: room for a 300-item wide search."""


@functools.cache
def default_corpus() -> Corpus:
    return extend_corpus(build_corpus(), EXTRA_SIZE, DEFAULT_SEED + 1)
