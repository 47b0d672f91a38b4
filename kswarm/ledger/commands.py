"""The ledger's command line: ``kswarm db ...`` for the schema and retention, ``kswarm export``.

The ``kswarm`` CLI calls :func:`register` with its subparsers; each command sets ``func`` to a
handler that takes the parsed namespace and returns the exit code. Exit codes: 0 done, 1
``db check`` found drift, 2 the input or the database is unusable (one line on stderr that
names the database without its password).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from kswarm.errors import KswarmError
from kswarm.ledger import engines, migrating, retention
from kswarm.ledger.repository import Ledger

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]


Exporter = Callable[[Ledger, str, IO[str]], Awaitable[int]]
"""An export format from a higher layer: ``(ledger, JOB, out) -> records written``."""


def register(
    subparsers: argparse._SubParsersAction[Any], exporters: Mapping[str, Exporter] | None = None
) -> None:
    """Add ``db`` (upgrade, downgrade, check, current, prune) and ``export``; ``exporters`` adds
    export formats next to ``jsonl``."""
    extra = dict(exporters or {})
    db = subparsers.add_parser("db", help="ledger database: migrations and retention")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    p = db_sub.add_parser("upgrade", help="migrate the ledger schema up (default: to head)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    _url_option(p)
    p.set_defaults(func=_guarded(_upgrade))

    p = db_sub.add_parser("downgrade", help="migrate the ledger schema down (default: to base)")
    p.add_argument("--revision", default="base", help="target revision (default: base)")
    _url_option(p)
    p.set_defaults(func=_guarded(_downgrade))

    p = db_sub.add_parser("check", help="fail (exit 1) when models and migrations differ")
    _url_option(p)
    p.set_defaults(func=_guarded(_check))

    p = db_sub.add_parser("current", help="print the revision the ledger schema is at")
    _url_option(p)
    p.set_defaults(func=_guarded(_current))

    p = db_sub.add_parser("prune", help="delete jobs that finished long ago, with their rows")
    p.add_argument(
        "--older-than", required=True, metavar="AGE", help="age such as 30d, 12h, 90m or 45s"
    )
    _url_option(p)
    p.set_defaults(func=_guarded(_prune))

    p = subparsers.add_parser("export", help="export a job's agent trajectories")
    p.add_argument("job", metavar="JOB", help="job uid, name, or namespace/name")
    p.add_argument("--format", choices=["jsonl", *extra], default="jsonl", help="output format")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    _url_option(p)
    p.set_defaults(func=_guarded(_export), exporters=extra)


def _url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="ledger database URL (default: KSWARM_DATABASE_URL, else SQLite under KSWARM_HOME)",
    )


def _url(ns: argparse.Namespace) -> str:
    return str(ns.url or engines.default_url())


def _guarded(handler: Handler) -> Handler:
    """Turn kswarm's errors into one line on stderr and exit code 2."""

    def run(ns: argparse.Namespace) -> int:
        try:
            return handler(ns)
        except migrating.SchemaDrift as e:
            print(f"kswarm: {e}", file=sys.stderr)
            return 1
        except KswarmError as e:
            print(f"kswarm: error: {_one_line(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"kswarm: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
            return 2

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _upgrade(ns: argparse.Namespace) -> int:
    url = _url(ns)
    migrating.upgrade(url, ns.revision)
    print(f"ledger {engines.mask(url)} is at revision {migrating.current(url) or 'base'}")
    return 0


def _downgrade(ns: argparse.Namespace) -> int:
    url = _url(ns)
    migrating.downgrade(url, ns.revision)
    print(f"ledger {engines.mask(url)} is at revision {migrating.current(url) or 'base'}")
    return 0


def _check(ns: argparse.Namespace) -> int:
    url = _url(ns)
    migrating.check(url)
    print(f"ledger {engines.mask(url)}: models and migrations agree")
    return 0


def _current(ns: argparse.Namespace) -> int:
    revision = migrating.current(_url(ns))
    print(revision or "base")
    return 0


def _prune(ns: argparse.Namespace) -> int:
    age = retention.parse_age(ns.older_than)
    url = _url(ns)

    async def go() -> int:
        ledger = await Ledger.connect(url)
        try:
            return await retention.prune(ledger, age)
        finally:
            await ledger.close()

    deleted = asyncio.run(go())
    print(f"pruned {deleted} job(s) that finished more than {ns.older_than} ago")
    return 0


def _export(ns: argparse.Namespace) -> int:
    url = _url(ns)

    async def go(out: IO[str]) -> int:
        ledger = await Ledger.connect(url)
        try:
            exporter = (getattr(ns, "exporters", None) or {}).get(ns.format)
            if exporter is not None:
                return int(await exporter(ledger, ns.job, out))
            job = await ledger.find_job(ns.job)
            if job is None:
                raise KswarmError(f"no job {ns.job!r} in ledger {ledger.masked_url}")
            n = 0
            async for record in retention.export_trajectories(ledger, job.uid):
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
            return n
        finally:
            await ledger.close()

    with _output(ns.output) as out:
        n = asyncio.run(go(out))
    if ns.output:
        print(f"wrote {n} trajectories to {ns.output}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if not path:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", encoding="utf-8") as f:
        try:
            yield f
        except BaseException:
            f.close()
            partial.unlink(missing_ok=True)
            raise
    partial.replace(target)
