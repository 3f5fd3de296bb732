"""Notifications (issue 12): rules (Settings > Notifications) with the organizations and
departments they cover; events that rules notify about; one delivery row per (rule, subject,
threshold, occurrence, stage, channel, recipient) under a unique constraint, so that a notice
is sent exactly once however many sweeps compute it; webhooks, their durable messages and
per-hook attempt log; acknowledgements and snoozes; recipients' digest preferences; sweeps.
Outbox messages get an HTML part next to the plain text (existing rows: none).

Revision ID: 0018_notifications
Revises: 0017_acme
Create Date: 2026-12-06 20:37:44

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0018_notifications"
down_revision = "0017_acme"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notification_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type', sa.Enum('ssl_expiration', 'client_expiration', 'device_expiration', 'code_signing_expiration', 'request_created', 'request_approved', 'request_declined', 'certificate_issued', 'certificate_revoked', 'issuance_failed', 'discovery_summary', 'unknown_certificate', 'stale_certificate_served', 'delegation_requested', 'delegation_approved', 'delegation_rejected', 'admin_created', 'admin_locked', 'admin_deleted', name='notificationtype', native_enum=False, length=40), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('cert_type', sa.String(length=16), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=True),
    sa.Column('certificate_id', sa.Integer(), nullable=True),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('fanned_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_events'))
    )
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.create_index('ix_notification_events_pending', ['fanned_out_at', 'id'], unique=False)

    op.create_table('notification_sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ranges_total', sa.Integer(), nullable=False),
    sa.Column('ranges_done', sa.JSON(), nullable=False),
    sa.Column('ranges_failed', sa.JSON(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_sweeps'))
    )
    with op.batch_alter_table('notification_sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_sweeps_started_at'), ['started_at'], unique=False)

    op.create_table('notification_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('type', sa.Enum('ssl_expiration', 'client_expiration', 'device_expiration', 'code_signing_expiration', 'request_created', 'request_approved', 'request_declined', 'certificate_issued', 'certificate_revoked', 'issuance_failed', 'discovery_summary', 'unknown_certificate', 'stale_certificate_served', 'delegation_requested', 'delegation_approved', 'delegation_rejected', 'admin_created', 'admin_locked', 'admin_deleted', name='notificationtype', native_enum=False, length=40), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('applies_to_all', sa.Boolean(), nullable=False),
    sa.Column('profile_ids', sa.JSON(), nullable=False),
    sa.Column('days', sa.JSON(), nullable=False),
    sa.Column('frequency', sa.Enum('threshold', 'daily', name='frequency', native_enum=False, length=16), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('subscribers', sa.JSON(), nullable=False),
    sa.Column('send_email', sa.Boolean(), nullable=False),
    sa.Column('webhook_ids', sa.JSON(), nullable=False),
    sa.Column('digest', sa.Boolean(), nullable=False),
    sa.Column('escalate_after_hours', sa.Integer(), nullable=True),
    sa.Column('escalate_roles', sa.JSON(), nullable=False),
    sa.Column('escalate_subscribers', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['admins.id'], name=op.f('fk_notification_rules_created_by_id_admins'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_rules'))
    )
    with op.batch_alter_table('notification_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_rules_type'), ['type'], unique=False)

    op.create_table('notification_webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('sealed_secret', sa.LargeBinary(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['admins.id'], name=op.f('fk_notification_webhooks_created_by_id_admins'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_notification_webhooks_organization_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_webhooks'))
    )
    with op.batch_alter_table('notification_webhooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_webhooks_organization_id'), ['organization_id'], unique=False)

    op.create_table('notification_preferences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('digest', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['notification_rules.id'], name=op.f('fk_notification_preferences_rule_id_notification_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_preferences')),
    sa.UniqueConstraint('rule_id', 'recipient', name=op.f('uq_notification_preferences_rule_id'))
    )
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_preferences_rule_id'), ['rule_id'], unique=False)

    op.create_table('notification_rule_places',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_notification_rule_places_department_id_departments')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_notification_rule_places_organization_id_organizations')),
    sa.ForeignKeyConstraint(['rule_id'], ['notification_rules.id'], name=op.f('fk_notification_rule_places_rule_id_notification_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_rule_places'))
    )
    with op.batch_alter_table('notification_rule_places', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_rule_places_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_rule_places_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_rule_places_rule_id'), ['rule_id'], unique=False)

    op.create_table('webhook_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'sent', 'failed', name='webhookmessagestatus', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['webhook_id'], ['notification_webhooks.id'], name=op.f('fk_webhook_messages_webhook_id_notification_webhooks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_messages'))
    )
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_messages_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_messages_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_messages_webhook_id'), ['webhook_id'], unique=False)

    op.create_table('webhook_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['webhook_messages.id'], name=op.f('fk_webhook_attempts_message_id_webhook_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_id'], ['notification_webhooks.id'], name=op.f('fk_webhook_attempts_webhook_id_notification_webhooks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts'))
    )
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_attempts_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_attempts_webhook_id'), ['webhook_id'], unique=False)

    op.create_table('notification_acks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('acknowledged', 'snoozed', name='ackstate', native_enum=False, length=16), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('by', sa.String(length=320), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_notification_acks_certificate_id_certificates')),
    sa.ForeignKeyConstraint(['rule_id'], ['notification_rules.id'], name=op.f('fk_notification_acks_rule_id_notification_rules')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_acks')),
    sa.UniqueConstraint('rule_id', 'certificate_id', name=op.f('uq_notification_acks_rule_id'))
    )
    with op.batch_alter_table('notification_acks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_acks_certificate_id'), ['certificate_id'], unique=False)

    op.create_table('notification_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('subject_key', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=True),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('stage', sa.SmallInteger(), nullable=False),
    sa.Column('channel', sa.Enum('email', 'webhook', name='channel', native_enum=False, length=16), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('status', sa.Enum('pending', 'composed', 'refused', 'suppressed', name='deliverystatus', native_enum=False, length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('outbox_message_id', sa.Integer(), nullable=True),
    sa.Column('webhook_message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('composed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_notification_deliveries_certificate_id_certificates')),
    sa.ForeignKeyConstraint(['event_id'], ['notification_events.id'], name=op.f('fk_notification_deliveries_event_id_notification_events')),
    sa.ForeignKeyConstraint(['outbox_message_id'], ['outbox_messages.id'], name=op.f('fk_notification_deliveries_outbox_message_id_outbox_messages')),
    sa.ForeignKeyConstraint(['rule_id'], ['notification_rules.id'], name=op.f('fk_notification_deliveries_rule_id_notification_rules')),
    sa.ForeignKeyConstraint(['webhook_message_id'], ['webhook_messages.id'], name=op.f('fk_notification_deliveries_webhook_message_id_webhook_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_deliveries')),
    sa.UniqueConstraint('rule_id', 'subject_key', 'threshold', 'occurrence', 'stage', 'channel', 'recipient', name='uq_notification_deliveries_key')
    )
    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_deliveries_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_notification_deliveries_pending', ['status', 'rule_id'], unique=False)

    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('html', sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.alter_column('html', server_default=None)



def downgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('html')

    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_deliveries_pending')
        batch_op.drop_index(batch_op.f('ix_notification_deliveries_created_at'))

    op.drop_table('notification_deliveries')
    with op.batch_alter_table('notification_acks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_acks_certificate_id'))

    op.drop_table('notification_acks')
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_attempts_webhook_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_attempts_message_id'))

    op.drop_table('webhook_attempts')
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_messages_webhook_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_messages_status'))
        batch_op.drop_index(batch_op.f('ix_webhook_messages_next_attempt_at'))

    op.drop_table('webhook_messages')
    with op.batch_alter_table('notification_rule_places', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_rule_places_rule_id'))
        batch_op.drop_index(batch_op.f('ix_notification_rule_places_organization_id'))
        batch_op.drop_index(batch_op.f('ix_notification_rule_places_department_id'))

    op.drop_table('notification_rule_places')
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_preferences_rule_id'))

    op.drop_table('notification_preferences')
    with op.batch_alter_table('notification_webhooks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_webhooks_organization_id'))

    op.drop_table('notification_webhooks')
    with op.batch_alter_table('notification_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_rules_type'))

    op.drop_table('notification_rules')
    with op.batch_alter_table('notification_sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_sweeps_started_at'))

    op.drop_table('notification_sweeps')
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_events_pending')

    op.drop_table('notification_events')
