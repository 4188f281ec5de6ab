"""What /readyz reports: the database answers and every start-up step has finished.

Start-up steps (database, indexes, FAQ index, …) register by name and mark themselves done or
failed; components may add detail (for example calendar years without holiday data).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Readiness:
    pending: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, step: str) -> None:
        self.pending.add(step)

    def done(self, step: str) -> None:
        self.pending.discard(step)
        self.changed.set()

    def fail(self, step: str, reason: str) -> None:
        self.pending.discard(step)
        self.failed[step] = reason
        self.changed.set()

    @property
    def ready(self) -> bool:
        return not self.pending and not self.failed

    async def wait(self, timeout: float = 60.0) -> None:
        """Wait until start-up settles (tests and the CLI use this)."""
        async with asyncio.timeout(timeout):
            while self.pending and not self.failed:  # a failed step stops the steps after it
                self.changed.clear()
                await self.changed.wait()
        if self.failed:
            raise RuntimeError(f"start-up failed: {self.failed}")
