"""Administrators: "must change password at first sign-in" (set when someone else chose
the password; cleared when the administrator changes it).

Revision ID: 0008_console_first_password
Revises: 0007_operations
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_console_first_password"
down_revision = "0007_operations"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade():
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.drop_column("must_change_password")
