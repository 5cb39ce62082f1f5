"""application deployments (deploy on push, rollback)

Revision ID: b7c3d9e1f2a4
Revises: 696714d79128
Create Date: 2026-11-29 12:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7c3d9e1f2a4'
down_revision = '696714d79128'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('deployment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('repository', sa.String(length=255), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=True),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('pushed_by', sa.String(length=200), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['institution_id'], ['institution.id'], ),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_institution_id'), ['institution_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployment_service_id'), ['service_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployment_status'), ['status'], unique=False)


def downgrade():
    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_status'))
        batch_op.drop_index(batch_op.f('ix_deployment_service_id'))
        batch_op.drop_index(batch_op.f('ix_deployment_institution_id'))

    op.drop_table('deployment')
