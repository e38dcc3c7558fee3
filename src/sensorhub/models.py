"""Imports every domain's models so that ``Base.metadata`` is complete (Alembic, tests)."""

from sensorhub.accounts.models import (
    Grant,
    Invitation,
    InvitationSignup,
    Membership,
    Organisation,
    Role,
    User,
    Workspace,
)
from sensorhub.audit.models import AuditEvent
from sensorhub.auth.models import OidcIdentity, OidcLoginState, WebSession
from sensorhub.db import Base
from sensorhub.entities.models import Entity
from sensorhub.export.models import Export
from sensorhub.jobs import JobLease
from sensorhub.notices.models import Notification
from sensorhub.push.models import (
    Attempt,
    Connector,
    Delivery,
    PushCursor,
    PushEvent,
    Rule,
    RuleHistory,
    RuleState,
)
from sensorhub.push.subscription_models import NgsiSubscription
from sensorhub.timeseries.models import Series
from sensorhub.tokens.models import Credential, CredentialOrgAccess

__all__ = [
    "Attempt",
    "AuditEvent",
    "Base",
    "Connector",
    "Credential",
    "CredentialOrgAccess",
    "Delivery",
    "Entity",
    "Export",
    "Grant",
    "Invitation",
    "InvitationSignup",
    "JobLease",
    "Membership",
    "NgsiSubscription",
    "Notification",
    "OidcIdentity",
    "OidcLoginState",
    "Organisation",
    "PushCursor",
    "PushEvent",
    "Role",
    "Rule",
    "RuleHistory",
    "RuleState",
    "Series",
    "User",
    "WebSession",
    "Workspace",
]
