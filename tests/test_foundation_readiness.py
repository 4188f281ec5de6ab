import asyncio

import pytest

from bot.readiness import Readiness


async def test_ready_only_when_every_step_is_done():
    readiness = Readiness()
    readiness.expect("database")
    readiness.expect("faq_index")
    assert not readiness.ready
    readiness.done("database")
    assert not readiness.ready
    readiness.done("faq_index")
    assert readiness.ready
    await readiness.wait(1)


async def test_a_failed_step_ends_the_wait_at_once():
    readiness = Readiness()
    readiness.expect("indexes")
    readiness.expect("slots")  # never runs: the step before it fails
    waiting = asyncio.create_task(readiness.wait(30))
    await asyncio.sleep(0)
    readiness.fail("indexes", "OperationFailure: boom")
    with pytest.raises(RuntimeError, match="indexes"):
        await asyncio.wait_for(waiting, 2)
    assert not readiness.ready
