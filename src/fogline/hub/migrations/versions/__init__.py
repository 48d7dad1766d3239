"""One Alembic migration per schema change, applied in order by `upgrade_schema`."""

__all__: list[str] = []
