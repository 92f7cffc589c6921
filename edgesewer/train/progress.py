"""Rich progress bars for training: one bar per epoch with the running loss, a line per finished epoch."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn


class TrainProgress:
    """No-op when disabled (non-zero ranks, tests), so the loop never branches on it."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "TrainProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
            self._progress = None

    def start_epoch(self, epoch: int, epochs: int, n_batches: int) -> TaskID | None:
        if self._progress is None:
            return None
        self._task = self._progress.add_task(f"epoch {epoch + 1}/{epochs}", total=n_batches, info="")
        return self._task

    def advance(self, task: TaskID | None, done: int, loss: float, mean_loss: float) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=done, info=f"loss {loss:.4f} (mean {mean_loss:.4f})")

    def epoch_done(self, epoch: int, epochs: int, train_loss: float, monitor: str, value: float | None) -> None:
        if not self.enabled:
            return
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        self.console.print(f"epoch {epoch + 1}/{epochs}  train loss {train_loss:.4f}  {monitor} {shown}")

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)


def best_epoch_line(best: dict, keys: tuple[str, ...]) -> str:
    """The run's closing line, counting epochs from 1 like the per-epoch lines above it (the stored
    `best_metrics.json` and `results.jsonl` keep the engine's 0-based index)."""
    epoch = best.get("epoch")
    shown = "  ".join(f"{k} {best[k]:.4f}" for k in keys if k in best)
    return f"best epoch {epoch + 1 if isinstance(epoch, int) else '-'}: {shown}"
