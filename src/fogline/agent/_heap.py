"""The agent's heap and its garbage collector: local actions run on the
agent's event loop, so a collection's pause is an action's latency."""

import gc


def freeze_long_lived_objects() -> None:
    """Take what is alive once the agent has started out of the garbage
    collector's generations (called once, at start-up).

    Why: local actions (sensor -> pipeline -> actuator) run on the agent's
    event loop, and a full collection walks every tracked object; over the
    start-up heap (imports, models, pipelines) that is a 30-60 ms pause, tens
    of late actions at 1,000 msg/s. What is alive once the agent has started
    lives about as long as the agent, so the collector need not walk it again.
    Unfreeze and collect first, so garbage cycles made while starting are
    freed rather than kept forever.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def collect_replaced_objects() -> None:
    """Free the garbage cycles an applied state left behind (a replaced
    pipeline, the previous desired state) without walking the frozen start-up
    heap again.

    Why not refreeze after each apply: unfreezing and collecting walked every
    object the agent holds, 40-50 ms of CPU per config change (three quarters
    of the agent's work for one), paid before it reported the new revision;
    with a hundred agents sharing a host that was most of a change's
    propagation time. What an apply builds is small and stays where the
    collector finds it, so its cycles are freed here or by any later full
    collection, for a fraction of a millisecond.
    """
    gc.collect()
