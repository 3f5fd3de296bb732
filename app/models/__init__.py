"""ORM models, one module per aggregate; importing this registers them all."""

from app.models.accounts import Admin, AdminKind, AdminScope, AdminSession, Role, SignInThrottle
from app.models.api import ApiIdempotencyKey, ApiRateWindow
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
from app.models.persons import (
    EnrollmentStatus,
    Invitation,
    InvitationKind,
    InvitationStatus,
    MailTemplate,
    Person,
    PortalEnrollment,
    PortalSettings,
    PortalThrottle,
    ValidationType,
)
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
    "Admin",
    "AdminKind",
    "AdminScope",
    "AdminSession",
    "ApiIdempotencyKey",
    "ApiRateWindow",
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
    "EnrollmentStatus",
    "Invitation",
    "InvitationKind",
    "InvitationStatus",
    "Job",
    "JobStatus",
    "LintMode",
    "MailStatus",
    "MailTemplate",
    "Organization",
    "OutboxMessage",
    "Person",
    "PortalEnrollment",
    "PortalSettings",
    "PortalThrottle",
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
    "ValidationType",
    "WorkerHeartbeat",
]
