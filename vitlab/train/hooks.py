"""Small pieces around the training loop: the progress bar and stopping cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Protocol

from tqdm import tqdm


class Stoppable(Protocol):
    stop_signal: str | None


def progress_bar(total: int, done: int, epoch: int, is_main: bool) -> tqdm:
    """An epoch's bar over its steps, starting at ``done`` (a resumed epoch); shown on rank 0 only."""
    return tqdm(
        total=total,
        initial=done,
        desc=f"epoch {epoch + 1}",
        unit="step",
        leave=False,
        disable=None if is_main else True,
    )


@contextlib.contextmanager
def stop_on_signals(run: Stoppable) -> Iterator[None]:
    """SIGINT/SIGTERM set ``run.stop_signal`` (the loop saves and stops after the step in flight); a second
    SIGINT stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if run.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        run.stop_signal = signal.Signals(signum).name
        print(f"\nvitlab: {run.stop_signal} received, stopping after this step and saving last.pt", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
