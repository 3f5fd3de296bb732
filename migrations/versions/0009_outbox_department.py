"""Mail outbox scoped by department: outbox_messages.department_id, filled for existing
collection mail from the requests it names. A DRAO saw every message of the organization,
including other departments' collection links.

Existing issuance mail gets the organization and department of the requests it lists
("Request: #N"); one that lists requests of several organizations becomes visible to MRAOs
only, one of several departments of one organization to that organization's RAOs only.

Revision ID: 0009_outbox_department
Revises: 0008_console_first_password
Create Date: 2026-12-06 20:00:00.000000

"""
import re

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_outbox_department'
down_revision = '0008_console_first_password'
branch_labels = None
depends_on = None

REQUEST = re.compile(r"^Request: #(\d+)$", re.MULTILINE)


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_messages_department_id'), ['department_id'], unique=False)

    bind = op.get_bind()
    mails = bind.execute(
        sa.text("SELECT id, body FROM outbox_messages WHERE category = 'issuance'")
    ).all()
    for mail_id, body in mails:
        ids = sorted({int(n) for n in REQUEST.findall(body or "")})
        if not ids:
            continue
        places = set(
            bind.execute(
                sa.text(
                    "SELECT organization_id, department_id FROM certificate_requests"
                    " WHERE id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids},
            ).all()
        )
        orgs = {org for org, _ in places}
        if len(orgs) > 1:
            org_id, dept_id = None, None
        elif len(places) > 1:
            org_id, dept_id = orgs.pop(), None
        elif places:
            org_id, dept_id = places.pop()
        else:
            continue
        bind.execute(
            sa.text(
                "UPDATE outbox_messages SET organization_id = :org, department_id = :dept"
                " WHERE id = :id"
            ),
            {"org": org_id, "dept": dept_id, "id": mail_id},
        )


def downgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_messages_department_id'))
        batch_op.drop_column('department_id')
