"""Network discovery: tasks, assignment rules, scan runs and their shards, endpoints.

An Endpoint is "where a certificate is deployed": one row per (task, ip, port, host name),
pointing at the one inventory Certificate it presented (deduplicated by fingerprint).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.accounts import Admin
from app.models.certificates import Certificate
from app.models.org import Department, Organization
from app.models.types import UTCDateTime, str_enum, utcnow
from app.scan import settings


class DiscoveryTask(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "discovery_tasks"
    # Names are unique per owner (app.services.discovery.tasks also checks them
    # case-insensitively, and among the account-wide tasks, whose owner is NULL): an RAO
    # must not learn from "already exists" what another organization calls its tasks.
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    agent: Mapped[str] = mapped_column(String(32), default="Auto")
    # What the admin typed, validated by app.scan.targets; re-parsed for every run.
    ranges: Mapped[str] = mapped_column(Text)
    ports: Mapped[str] = mapped_column(String(512), default=settings.PORTS)
    host_overrides: Mapped[str] = mapped_column(Text, default="")
    connect_timeout: Mapped[float] = mapped_column(Float, default=settings.CONNECT_TIMEOUT)
    handshake_timeout: Mapped[float] = mapped_column(Float, default=settings.HANDSHAKE_TIMEOUT)
    concurrency: Mapped[int] = mapped_column(Integer, default=settings.CONCURRENCY)
    # New connections per second, 0 = no cap (app.scan.sweep.SweepOptions.rate).
    rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # "port = protocol" overrides of app.scan.starttls.DEFAULT_PORTS ("" = by port).
    protocols: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The app.recurrence dict ({"kind": "manual"} when unscheduled).
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True
    )
    # Owner: an organization for an RAO's task; None for an account-wide (MRAO) task.
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization | None] = relationship()
    rule_links: Mapped[list[TaskRule]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="TaskRule.position"
    )

    @property
    def rules(self) -> list[AssignmentRule]:
        return [link.rule for link in self.rule_links]

    def __str__(self) -> str:
        return self.name


class AssignmentRule(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "assignment_rules"
    # Unique per organization and department, for the same reason as task names.
    __table_args__ = (UniqueConstraint("organization_id", "department_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    match_mode: Mapped[str] = mapped_column(String(8), default="all")  # all | any
    conditions: Mapped[list[dict[str, str]]] = mapped_column(
        JSON, default=list
    )  # [{field, operator, value}]
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()

    def __str__(self) -> str:
        return self.name


class TaskRule(db.Model):  # type: ignore[name-defined,misc]
    """A rule attached to a task, in order (the first matching rule assigns)."""

    __tablename__ = "task_rules"
    __table_args__ = (UniqueConstraint("task_id", "rule_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("discovery_tasks.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[int] = mapped_column(ForeignKey("assignment_rules.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    task: Mapped[DiscoveryTask] = relationship(back_populates="rule_links")
    rule: Mapped[AssignmentRule] = relationship()


class RunStatus(enum.StrEnum):
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self is not RunStatus.RUNNING


class ScanRun(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "scan_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("discovery_tasks.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, 16), default=RunStatus.RUNNING, index=True
    )
    trigger: Mapped[str] = mapped_column(String(32), default="manual")
    started_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    targets_total: Mapped[int] = mapped_column(Integer, default=0)
    shards_total: Mapped[int] = mapped_column(Integer, default=0)
    # Filled when the run ends (sums over shards, so a retried shard is counted once).
    targets_done: Mapped[int] = mapped_column(Integer, default=0)
    tls_endpoints: Mapped[int] = mapped_column(Integer, default=0)
    certificates: Mapped[int] = mapped_column(Integer, default=0)
    new_certificates: Mapped[int] = mapped_column(Integer, default=0)
    assigned: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # outcomes by kind, summaries
    message: Mapped[str] = mapped_column(Text, default="")

    task: Mapped[DiscoveryTask] = relationship()
    started_by: Mapped[Admin | None] = relationship()


class ScanShard(db.Model):  # type: ignore[name-defined,misc]
    """One address block of a run, scanned by one dramatiq message (a Job)."""

    __tablename__ = "scan_shards"
    __table_args__ = (UniqueConstraint("run_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scan_runs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # app.scan.shards.Shard.to_dict()
    status: Mapped[str] = mapped_column(
        String(16), default="pending", index=True
    )  # pending running done failed cancelled
    targets_total: Mapped[int] = mapped_column(Integer, default=0)
    targets_done: Mapped[int] = mapped_column(Integer, default=0)
    # While running: targets in flight, each credited with the share of its timeout spent
    # (app.scan.sweep.SweepProgress.in_flight), so progress is right for silent ranges.
    in_flight: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    tls_endpoints: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Batch messages stored from the agent running this attempt (a shard of an agent task):
    # its "done" message is stored only after all the batches it announces.
    batches_received: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The agent's "done" (its body) when it came before some of its batches: the batch that
    # completes the count finishes the shard with it.
    agent_done: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ScanAgent(db.Model):  # type: ignore[name-defined,misc]
    """A scanner in a network zone: consumes its own queue (scan.<name>) with broker
    credentials only and signs what it reports with its Ed25519 key; only the public key is
    kept here (app.scan.agentwire). Agents are disabled, never deleted (tasks name them)."""

    __tablename__ = "scan_agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The ranges tasks of this agent may list (the agent enforces its own local copy too).
    allowed_ranges: Mapped[str] = mapped_column(Text, default="")
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the raw 32 bytes
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # From the agent's heartbeats:
    host: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    capacity: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    in_flight: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The agent host's own ceilings (CW_AGENT_MAX_RATE, CW_AGENT_MAX_IN_FLIGHT), from its
    # heartbeats; 0: none. The console's caps below can only lower them.
    host_max_rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    host_max_in_flight: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by an MRAO: the agent's caps over all the shards it runs (new connections a
    # second, connections in flight; 0: none), carried by every shard message.
    max_rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    max_in_flight: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __str__(self) -> str:
        return self.name


class AgentReceipt(db.Model):  # type: ignore[name-defined,misc]
    """A signed agent message already accepted (by the digest of its signed bytes): the same
    message sent again is a replay. Kept for twice the accepted clock skew."""

    __tablename__ = "agent_receipts"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("scan_agents.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


HEALTH_FLAGS = (
    "self_signed_leaf",
    "incomplete_chain",
    "misordered_chain",
    "hostname_mismatch",
    "expired",
    "not_yet_valid",
    "weak_key",
    "sha1_signature",
    "legacy_tls",
)


class Endpoint(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "endpoints"
    __table_args__ = (
        UniqueConstraint("task_id", "ip", "port", "host_name"),
        Index("ix_endpoints_certificate_id", "certificate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("discovery_tasks.id", ondelete="CASCADE"), index=True
    )
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"), nullable=True)
    ip: Mapped[str] = mapped_column(String(45))
    port: Mapped[int] = mapped_column(Integer)
    host_name: Mapped[str] = mapped_column(String(253), default="")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    tls_version: Mapped[str] = mapped_column(String(16), default="")
    cipher: Mapped[str] = mapped_column(String(128), default="")
    chain: Mapped[list[str]] = mapped_column(JSON, default=list)  # SHA-256 fingerprints, leaf first
    error: Mapped[str] = mapped_column(String(32), default="")  # ErrorKind or ''
    # app.scan.starttls.Protocol the port was scanned as (smtp = STARTTLS on SMTP, ...)
    protocol: Mapped[str] = mapped_column(String(16), default="tls", server_default="tls")
    error_detail: Mapped[str] = mapped_column(String(512), default="")
    self_signed_leaf: Mapped[bool] = mapped_column(Boolean, default=False)
    incomplete_chain: Mapped[bool] = mapped_column(Boolean, default=False)
    misordered_chain: Mapped[bool] = mapped_column(Boolean, default=False)
    hostname_mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    not_yet_valid: Mapped[bool] = mapped_column(Boolean, default=False)
    weak_key: Mapped[bool] = mapped_column(Boolean, default=False)
    sha1_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    legacy_tls: Mapped[bool] = mapped_column(Boolean, default=False)

    task: Mapped[DiscoveryTask] = relationship()
    certificate: Mapped[Certificate | None] = relationship()

    @property
    def flags(self) -> list[str]:
        return [f for f in HEALTH_FLAGS if getattr(self, f)]
