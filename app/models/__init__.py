"""ORM models, one module per aggregate; importing this registers them all."""

from app.models.accounts import Admin, AdminScope, AdminSession, Role
from app.models.audit import AuditEvent, AuditHead
from app.models.jobs import Job, JobStatus, Schedule, WorkerHeartbeat
from app.models.mail import MailStatus, OutboxMessage
from app.models.org import CertType, Delegation, DelegationStatus, Department, Domain, Organization

__all__ = [
    "Admin",
    "AdminScope",
    "AdminSession",
    "AuditEvent",
    "AuditHead",
    "CertType",
    "Delegation",
    "DelegationStatus",
    "Department",
    "Domain",
    "Job",
    "JobStatus",
    "MailStatus",
    "Organization",
    "OutboxMessage",
    "Role",
    "Schedule",
    "WorkerHeartbeat",
]
