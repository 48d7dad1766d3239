"""One scheduler tick at a time across hub replicas sharing one PostgreSQL."""

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._db import make_session_factory
from fogline.hub.rollouts import lock_rollouts, tick


def test_second_replica_skips_its_tick_while_the_first_holds_the_lock(postgres_url):
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    sessions = make_session_factory(engine)
    try:
        with sessions() as first, first.begin():
            assert lock_rollouts(first, wait=False)
            with sessions() as second, second.begin():
                assert tick(second, offline_after_s=3.5) is None  # skipped, not blocked
        # The lock ends with the first transaction: the next tick runs.
        with sessions() as third, third.begin():
            assert tick(third, offline_after_s=3.5) == 0
    finally:
        engine.dispose()


def test_sqlite_single_hub_always_ticks(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade_schema(engine)
    try:
        with make_session_factory(engine)() as session, session.begin():
            assert tick(session, offline_after_s=3.5) == 0
    finally:
        engine.dispose()
