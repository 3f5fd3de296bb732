"""ORM models, one module per aggregate; importing this registers them all."""

from app.models.accounts import Admin, AdminScope, AdminSession, Role, SignInThrottle
from app.models.acme import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeExternalKey,
    AcmeNonce,
    AcmeOrder,
)
from app.models.audit import AuditEvent, AuditHead
from app.models.certificates import (
    Certificate,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    RequestMode,
    RequestStatus,
)
from app.models.discovery import (
    HEALTH_FLAGS,
    AssignmentRule,
    DiscoveryTask,
    Endpoint,
    RunStatus,
    ScanRun,
    ScanShard,
    TaskRule,
)
from app.models.domains import Delegation, DelegationStatus, Domain
from app.models.jobs import Job, JobStatus, Schedule, WorkerHeartbeat
from app.models.mail import MailStatus, OutboxMessage
from app.models.org import CertType, Department, Organization
from app.models.pki import (
    BlockedKey,
    CaStatus,
    CertificateAuthority,
    CertificateProfile,
    CrlPublication,
    LintMode,
    SerialNumber,
)

__all__ = [
    "HEALTH_FLAGS",
    "AcmeAccount",
    "AcmeAuthorization",
    "AcmeChallenge",
    "AcmeExternalKey",
    "AcmeNonce",
    "AcmeOrder",
    "Admin",
    "AdminScope",
    "AdminSession",
    "AssignmentRule",
    "AuditEvent",
    "AuditHead",
    "BlockedKey",
    "CaStatus",
    "CertOrigin",
    "CertStatus",
    "CertType",
    "Certificate",
    "CertificateAuthority",
    "CertificateProfile",
    "CertificateRequest",
    "CrlPublication",
    "Delegation",
    "DelegationStatus",
    "Department",
    "DiscoveryTask",
    "Domain",
    "Endpoint",
    "Job",
    "JobStatus",
    "LintMode",
    "MailStatus",
    "Organization",
    "OutboxMessage",
    "RequestMode",
    "RequestStatus",
    "Role",
    "RunStatus",
    "ScanRun",
    "ScanShard",
    "Schedule",
    "SerialNumber",
    "SignInThrottle",
    "TaskRule",
    "WorkerHeartbeat",
]
