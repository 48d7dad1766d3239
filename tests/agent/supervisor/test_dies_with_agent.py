"""A module must not outlive a SIGKILLed agent: no orphan keeps its port or files."""

import signal
import subprocess
import sys
import textwrap
import time

from tests.support.processes import process_alive

CHILD = textwrap.dedent("""\
    import asyncio, sys
    from pathlib import Path
    from fogline.agent.supervisor import ProcessRuntime, RestartPolicy, Resources, RunSpec

    async def main():
        work = Path(sys.argv[1])
        spec = RunSpec(name="sleeper", version="1.0.0", workdir=work,
                       command=(sys.executable, "-c", "import time; time.sleep(600)"), env={},
                       config_path=None, health=None, start_grace_s=0.1, stop_grace_s=1,
                       restart=RestartPolicy(), resources=Resources())
        process = await ProcessRuntime().start(spec, work / "out.log", work / "err.log")
        print(process.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """)


def test_module_dies_when_the_agent_is_killed(tmp_path):
    agent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        module_pid = int(agent.stdout.readline())
        assert process_alive(module_pid)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        deadline = time.monotonic() + 5
        while process_alive(module_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(module_pid)
    finally:
        if agent.poll() is None:
            agent.kill()
