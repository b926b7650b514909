"""lang/runtime/alarms.py: many deadlines, one task. Alarms fire once their deadline has
passed, in deadline order, never before it; a cancelled one never fires; an alarm due before
what the task sleeps until wakes it; dead alarms do not pile up in the heap."""

from __future__ import annotations

import anyio
import pytest

from lang.runtime.alarms import Alarms

pytestmark = pytest.mark.anyio


async def test_alarms_fire_in_order_after_their_deadline_and_cancelled_ones_never() -> None:
    alarms = Alarms()
    fired: list[tuple[str, float, float]] = []
    done = anyio.Event()

    def ring(name: str, deadline: float) -> None:
        fired.append((name, deadline, anyio.current_time()))
        if name == "last":
            done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(alarms.run)
            now = anyio.current_time()
            alarms.at(now + 3600, lambda: ring("never", now + 3600))
            await anyio.sleep(0.01)  # the task now sleeps for an hour
            late = alarms.at(now + 0.3, lambda: ring("late", now + 0.3))
            gone = alarms.at(now + 0.1, lambda: ring("gone", now + 0.1))
            # due before what the task sleeps until: it must wake for them (else the
            # hard timeout ends the test)
            alarms.at(now + 0.05, lambda: ring("early", now + 0.05))
            alarms.at(now + 0.4, lambda: ring("last", now + 0.4))
            gone.cancel()
            await done.wait()
            tg.cancel_scope.cancel()
    assert [name for name, _, _ in fired] == ["early", "late", "last"]
    assert all(at >= deadline for _, deadline, at in fired)
    assert late.fire is None  # fired alarms are spent


async def test_dead_alarms_do_not_pile_up() -> None:
    """Round trips that each set a deadline and finish long before it: the heap stays about
    as big as the waits going on, not as the waits made."""
    alarms = Alarms()
    async with anyio.create_task_group() as tg:
        tg.start_soon(alarms.run)
        for _ in range(10_000):
            a = alarms.at(anyio.current_time() + 60, lambda: None)
            a.cancel()
        assert len(alarms) <= 2
        tg.cancel_scope.cancel()
