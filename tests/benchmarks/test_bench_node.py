"""benchmarks/bench_node.py: its memory breakdown imports every stage it names."""

from benchmarks.bench_node import IMPORT_STAGES, import_stages


def test_every_import_stage_runs_and_the_agent_start_is_cheaper_than_the_whole() -> None:
    stages = import_stages()
    assert [name for name, _, _ in stages] == ["bare python", *(n for n, _ in IMPORT_STAGES)]
    counts = [count for _, _, count in stages]
    assert counts == sorted(counts)  # cumulative: a renamed module would fail its stage
    at_start = dict((name, count) for name, _, count in stages)[
        "fogline.agent: the rest of what the agent's process imports"
    ]
    assert at_start < counts[-1]  # what only updates and other commands import comes later
