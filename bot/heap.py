"""Keep Python's cyclic garbage collector away from the start-up heap.

After start-up the process holds a large, long-lived heap (jieba's dictionary, the FAQ index,
wechatpy's and pymongo's modules …): a full collection walks all of it, about 120 ms on a small
machine, and pauses every request in flight — the p99 of the WeChat callback under load was
dominated by these pauses. ``gc.freeze()`` moves everything alive at the end of start-up into a
permanent generation the collector skips; objects created later are collected as usual.
"""

from __future__ import annotations

import gc
import logging

from aiohttp import web

log = logging.getLogger(__name__)


_frozen = False


async def freeze_startup_heap(app: web.Application) -> None:
    """The last start-up step: collect once, then freeze what is left. Once per process: a process
    that builds several apps (the test suite) must not pin every later app's garbage."""
    global _frozen
    if _frozen:
        return
    gc.collect()
    gc.freeze()
    _frozen = True
    log.info("start-up heap frozen", extra={"objects": gc.get_freeze_count()})
