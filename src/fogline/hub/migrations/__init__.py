"""Alembic scripts of the hub schema (`env.py`, `versions/`); loaded by path, no public names."""

__all__: list[str] = []
