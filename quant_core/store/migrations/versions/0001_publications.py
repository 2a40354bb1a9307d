"""Publications, blobs and which publication uses which blob under which name.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "publications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("delete_hash", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("image_count", sa.Integer, nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("total_bytes", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_publications_expires_at", "publications", ["expires_at"])
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "publication_blobs",
        sa.Column("publication_id", sa.String(32), sa.ForeignKey("publications.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
    )
    op.create_index("ix_publication_blobs_sha256", "publication_blobs", ["sha256"])


def downgrade() -> None:
    op.drop_table("publication_blobs")
    op.drop_table("blobs")
    op.drop_table("publications")
