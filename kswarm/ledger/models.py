"""SQLAlchemy models of the ledger: the platform's memory of every job.

Conversations, model outputs and tool results live here, not in Temporal history (claim
check). The same models serve SQLite (laptop, embedded stack) and PostgreSQL (production, tests);
JSON columns become JSONB on PostgreSQL. Alembic migrations in ``migrations/`` must match them
(``alembic check``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Agent", "Base", "Job", "Message", "ModelCall", "Stage", "ToolCall"]

JSONType = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)
# BigInteger autoincrement that stays INTEGER PRIMARY KEY (rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    __tablename__ = "jobs"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), default="default")
    name: Mapped[str] = mapped_column(String(253))
    mode: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    phase: Mapped[str] = mapped_column(String(16), default="Pending")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    # Live budgets, updated atomically by the write path.
    tool_calls_reserved: Mapped[int] = mapped_column(Integer, default=0)
    tokens_input: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_output: Mapped[int] = mapped_column(BigInteger, default=0)
    # Outcome, written once when the job ends.
    critical_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    total_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    speedup: Mapped[float | None] = mapped_column(Float, default=None)
    wall_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    model_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    quality: Mapped[float | None] = mapped_column(Float, default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)

    __table_args__ = (
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_namespace_phase", "namespace", "phase"),
        Index("ix_jobs_name", "name"),
    )


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_uid: Mapped[str] = mapped_column(ForeignKey("jobs.uid", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(String(128), default=None)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(253))
    task: Mapped[str] = mapped_column(Text)
    system_prompt: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    stage: Mapped[int | None] = mapped_column(Integer, default=None)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)

    __table_args__ = (Index("ix_agents_job_uid_stage", "job_uid", "stage"),)


class Stage(Base):
    __tablename__ = "stages"

    job_uid: Mapped[str] = mapped_column(
        ForeignKey("jobs.uid", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    main_steps: Mapped[int] = mapped_column(Integer)
    max_subagent_steps: Mapped[int] = mapped_column(Integer)
    subagents: Mapped[int] = mapped_column(Integer)
    model_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_uid: Mapped[str] = mapped_column(ForeignKey("jobs.uid", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (UniqueConstraint("agent_id", "seq"), Index("ix_messages_job_uid", "job_uid"))


class ModelCall(Base):
    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_uid: Mapped[str] = mapped_column(ForeignKey("jobs.uid", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    pool: Mapped[str] = mapped_column(String(253))
    replica: Mapped[str | None] = mapped_column(String(512), default=None)
    model: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    ttft_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    latency_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    model_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    # Token ids and log-probabilities, when the pool asks for them (token-level exports).
    prompt_token_ids: Mapped[list[int] | None] = mapped_column(JSONType, default=None)
    completion_token_ids: Mapped[list[int] | None] = mapped_column(JSONType, default=None)
    logprobs: Mapped[list[float] | None] = mapped_column(JSONType, default=None)

    __table_args__ = (
        # One row per attempt: a replayed activity cannot write an attempt twice.
        UniqueConstraint("agent_id", "step", "attempt"),
        Index("ix_model_calls_job_uid", "job_uid"),
        Index("ix_model_calls_pool_started_at", "pool", "started_at"),
    )


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    job_uid: Mapped[str] = mapped_column(ForeignKey("jobs.uid", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    call_id: Mapped[str | None] = mapped_column(String(128), default=None)
    tool: Mapped[str] = mapped_column(String(128))
    arguments: Mapped[Any] = mapped_column(JSONType)
    result: Mapped[Any | None] = mapped_column(JSONType, default=None)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deduplicated: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    approval: Mapped[Any | None] = mapped_column(JSONType, default=None)
    """A person's decision on a call that waited for one: ``approved``, ``by``, ``at``,
    ``reason``."""
    side_effects: Mapped[bool | None] = mapped_column(Boolean, default=None)
    """The tool's side-effect flag when the call was made (an MCP tool's from its annotations);
    ``None`` for a call of no registered tool (a control, an unknown name)."""
    server: Mapped[str | None] = mapped_column(String(253), default=None)
    """The MCP tool server the tool comes from; ``None`` for a built-in tool."""

    __table_args__ = (
        Index("ix_tool_calls_job_uid_tool", "job_uid", "tool"),
        Index("ix_tool_calls_agent_id_step", "agent_id", "step"),
        Index("ix_tool_calls_started_at", "started_at"),
    )
