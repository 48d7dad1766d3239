"""A module must not outlive a SIGKILLed agent: no orphan keeps its port or files."""

import signal
import subprocess
import sys
import textwrap

from tests.support.processes import process_alive, wait_until

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
    with subprocess.Popen(  # the block closes the pipe and reaps the agent
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as agent:
        try:
            module_pid = int(agent.stdout.readline())
            assert process_alive(module_pid)
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            wait_until(lambda: not process_alive(module_pid), 5, "the module gone")
        finally:
            if agent.poll() is None:
                agent.kill()
