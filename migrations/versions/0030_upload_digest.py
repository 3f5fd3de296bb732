"""import_uploads.sha256: the SHA-256 of an upload's bytes, taken when it is stored, so that
a worker process reading several parts of one ZIP can keep the archive's parsed directory
between them and know it is the same file (app/services/imports/uploads.py). Uploads stored
before have none ("") and are read as before, their directory parsed once per part.

Revision ID: 0030_upload_digest
Revises: 0029_acme_dispatch
Create Date: 2026-12-07 13:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0030_upload_digest"
down_revision = "0029_acme_dispatch"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("import_uploads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sha256", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade():
    with op.batch_alter_table("import_uploads", schema=None) as batch_op:
        batch_op.drop_column("sha256")
