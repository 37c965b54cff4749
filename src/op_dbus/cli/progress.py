"""A live display of an apply on a terminal, shown once the apply has run for a second.

Short applies print nothing extra; long ones (containers starting, vswitchd realising
bridges) show each action as its plugin starts it and as it is done, with its time, on stderr so
`--json` output stays clean. Nothing is drawn when stderr is not a terminal: the summary
at the end (`render.render_result`) says what was done either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.live import Live

    from op_dbus.engine.apply import ProgressEvent

SHOW_AFTER_SECONDS = 1.0


@dataclass
class Step:
    """One line of the display: what runs (or ran), since when, and how it ended."""

    text: str
    started: float
    ended: float | None = None
    style: str = ""


class ApplyProgress:
    """Context manager fed with engine ProgressEvents; draws only on a terminal."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.started = time.monotonic()
        self.steps: list[Step] = []
        self.running: dict[str, Step] = {}
        """The step of each plugin's batch under way, by plugin name."""
        self.actions: dict[int, Step] = {}
        """The steps of actions under way, by the action's id()."""
        self.live: Live | None = None

    def __enter__(self) -> ApplyProgress:
        self.started = time.monotonic()
        return self

    def update(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        from op_dbus.engine.apply import ProgressKind

        now = time.monotonic()
        prefix = "rolling back: " if event.rollback else ""
        if event.kind == ProgressKind.BATCH:
            self._end(event.plugin, now)
            what = f"{event.detail} action(s)" if event.detail != "1" else "1 action"
            step = Step(f"{prefix}{event.plugin}: applying {what}", now)
            self.running[event.plugin] = step
            self.steps.append(step)
        elif event.kind == ProgressKind.STARTED and event.action is not None:
            self._end(event.plugin, now)  # the batch's own line gives way to its actions'
            step = Step(f"{prefix}{event.action.kind} {event.action.resource}", now)
            self.actions[id(event.action)] = step
            self.steps.append(step)
        elif event.kind == ProgressKind.ACTION and event.action is not None:
            done: Step | None = self.actions.pop(id(event.action), None)
            if done is None:
                batch = self.running.get(event.plugin)
                began = batch.started if batch is not None else now
                done = Step(f"{prefix}{event.action.kind} {event.action.resource}", began)
                self.steps.append(done)
            done.ended, done.style = now, "green"
        elif event.kind == ProgressKind.VERIFY:
            self._end(event.plugin, now)
            if event.detail == "started":
                self.running[event.plugin] = step = Step(f"verifying {event.plugin}", now)
                self.steps.append(step)
        elif event.kind == ProgressKind.ROLLBACK:
            for name in list(self.running):
                self._end(name, now)
            detail = f" {event.plugin}" if event.plugin else ""
            self.steps.append(Step(f"rolling back{detail}: {event.detail}", now, now, "red"))
        self._start_live()

    def _end(self, plugin: str, now: float) -> None:
        step = self.running.pop(plugin, None)
        if step is not None and step.ended is None:
            step.ended = now

    def _start_live(self) -> None:
        """The display starts with the first event (after the plan was printed); it draws
        nothing until the apply has run SHOW_AFTER_SECONDS, refreshing by itself meanwhile."""
        if self.live is None:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self.live.start()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        if now - self.started < SHOW_AFTER_SECONDS:
            return
        table = Table.grid(padding=(0, 1))
        for step in self.steps[-20:]:  # the last ones: a terminal has only so many lines
            mark: RenderableType
            if step.ended is None:
                mark = Spinner("dots", style="cyan")
                took = f"{now - step.started:.1f} s"
            else:
                mark, took = (
                    Text("✓" if step.style != "red" else "!", style=step.style or "dim"),
                    (f"{step.ended - step.started:.1f} s"),
                )
            table.add_row(mark, Text(step.text, style=step.style), Text(took, style="dim"))
        yield table

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
