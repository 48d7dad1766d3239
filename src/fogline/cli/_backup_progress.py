"""Rich's progress bars for `fogline hub backup` and `fogline hub restore`
(apart from the commands: `fogline hub serve` registers them with Typer and
should not pay for Rich's progress at every start)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from ._common import err_console


class _Bytes(DownloadColumn):
    """Bytes done of the total; nothing for a step that has no byte count."""

    def render(self, task: Task) -> Text:
        return Text("") if task.fields.get("no_bytes") else super().render(task)


class _Speed(TransferSpeedColumn):
    def render(self, task: Task) -> Text:
        return Text("") if task.fields.get("no_bytes") else super().render(task)


class RichProgress:
    """The backup package's progress port, drawn by Rich on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    @contextmanager
    def step(self, description: str, total_bytes: int | None) -> Iterator[Callable[[int], None]]:
        task = self._progress.add_task(description, total=total_bytes, no_bytes=total_bytes is None)

        def advance(amount: int) -> None:
            self._progress.advance(task, amount)

        yield advance
        # Done (not failed): a step without a total (a database dump) ends as a full bar too.
        end = total_bytes or self._progress.tasks[task].completed or 1
        self._progress.update(task, total=end, completed=end)


@contextmanager
def progress_bars() -> Iterator[RichProgress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Bytes(),
        _Speed(),
        TimeElapsedColumn(),
        console=err_console,
        # Bars while it works, on a terminal only; then the one summary or error line.
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        yield RichProgress(progress)
