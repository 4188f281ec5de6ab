"""The outbox dispatcher: delivers the notifications of ``bot.notify.outbox`` by the best channel.

Claiming. A notification is claimed by a conditional update from ``pending`` (and due) to
``sending`` with ``lease_until``, ``claimed_by`` and a fresh ``claim_token``; only the instance
whose update matched owns it. A ``sending`` notification whose lease ran out (its instance crashed
or hung) is claimed the same way, so another instance finishes the work. Several instances may run
the dispatcher at once. The claim is ``update_many({_id: {$in: candidates}, status, due_at/lease})``
followed by a read by ``_id`` and token rather than one ``find_one_and_update`` per document: the
same atomicity per document, a fraction of the round trips, and the embedded SecantusDB server
executes findAndModify with a collection scan (its write re-asserts the query under ``$and``,
which no index serves), which made claiming cost O(outbox size) per message. Filters list ``_id``
first so that server looks documents up by ``_id``.

Channels, in order, for each claimed notification (its inbox copy is written first, keyed by the
notification id, so the inbox holds every notification whatever happens next):
1. subscribe message, when the kind has a template id, the payload renders within WeChat's field
   rules and the user has a grant. ``bot.notify.grants.hold_grant`` takes it for this notification in one
   single-document update that also records the holder, so the notification keeps its grant through
   transient retries and through a crash (the reclaimed attempt finds it instead of losing it or
   taking a second). The grants of a claimed batch are taken together (one bulk write,
   ``grants.hold_grants``), a write per message being what limited the drain rate.
   A permanent failure gives it back unless WeChat answered 43101 (there was no
   grant to give back). No multi-document transaction: a dispatcher killed inside one would leave it
   open on the server until the server's transaction lifetime runs out;
2. customer-service text, when the user wrote to us within 48 hours (``bot.wechat.users.in_service_window``);
3. the in-app inbox (already written): the notification is marked sent with channel ``inbox``.
A permanent WeChat error moves on to the next channel (the reasons are kept in ``last_error``). A
transient one (time-out, -1, 45009, HTTP 5xx …) puts the notification back to ``pending`` with
exponential backoff and jitter; after ``max_attempts`` it ends ``failed`` with the reason (its
inbox copy stays). The WeChat client is called without its own retries: the schedule here is the
retry policy, and it survives restarts.

Exactly once, and the window left. Right after the API call returns, the acceptance goes into this
process's local journal (one ``write()``, microseconds, survives the death of the process:
``bot/notify/journal.py``) and then into the database (``status: sent``, channel,
``sent_at``; under load together with the acceptances that arrived while the previous such write
was in flight: ``_AcceptanceRecorder``). A dispatcher on the same ``DATA_DIR`` replays a dead
process's journal before it claims anything, so a restarted process does not send again what was
delivered. The window that remains: a crash while a request is on its way to WeChat or its answer on
its way back (WeChat accepts, we never learn it — a few milliseconds per message in flight), or a
machine that never comes back (another instance reclaims after the lease, and the messages accepted
in the last database round trip go out again). A time-out is the same window seen from the other
side: WeChat may have accepted a request whose answer we never saw, and the retry repeats it.
WeChat's send APIs take no idempotency key, so this window can be narrowed but not closed;
everything else (claims, retries, inbox copies, grant bookkeeping) is idempotent or conditional on
the claim token. At shutdown (SIGTERM) the running dispatch stops claiming and finishes its sends
before the scheduler stops (``dispatch_context``). ``tests/test_outbox_crash.py`` kills a worker with
SIGKILL right after WeChat (the fake) accepted its 300th of 1,000 messages — the worst moment — and
counts: nothing is lost; the journal recovers 6 to 31 acceptances per kill that would otherwise go
out again, and the duplicates left (1 to 9 per kill so far, at 64 sends in flight) are the requests
and answers that were on the wire or not yet read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from pymongo import ASCENDING, UpdateMany
from pymongo.asynchronous.database import AsyncDatabase

from bot.config import Settings
from bot.jobs import Job
from bot.keys import DB, SETTINGS
from bot.leases import INSTANCE_ID
from bot.notify import grants, inbox
from bot.notify.journal import AcceptanceJournal
from bot.notify.outbox import COLLECTION, FAILED, PENDING, SENDING, SENT
from bot.notify.templates import TEMPLATES, Rendered, TemplateBook
from bot.wechat import users
from bot.wechat.api import NO_RETRY, NO_SUBSCRIPTION, WECHAT, WeChatClient, WeChatError

log = logging.getLogger(__name__)

SUBSCRIBE, CUSTOMER_SERVICE, INBOX = "subscribe", "customer_service", "inbox"

OUTBOX_SENDS = Counter(
    "outbox_sends_total", "Notification delivery attempts by channel and result "
    "(sent, transient_error, permanent_error)", ["channel", "result"]
)
OUTBOX_FAILED = Counter("outbox_failed_total", "Notifications given up after the last retry")
OUTBOX_CLAIMS = Counter("outbox_claims_total", "Notifications claimed, new or reclaimed after a lease expired",
                        ["source"])
OUTBOX_DELAY = Histogram(
    "outbox_delivery_delay_seconds", "From due time to delivery, by channel", ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200),
)
OUTBOX_DEPTH = Gauge("outbox_depth", "Notifications due and not yet delivered, by status (pending, sending)",
                     ["status"])
OUTBOX_OLDEST = Gauge("outbox_oldest_pending_age_seconds", "How long the oldest due pending notification waits")

# The job ticks every 2 s and each run keeps polling for 1.5 s, so a new notification waits at most
# about half a second for a dispatcher instead of a whole tick.
DISPATCH_EVERY = timedelta(seconds=2)
DISPATCH_LINGER = timedelta(seconds=1.5)
SHUTDOWN_GRACE = timedelta(seconds=20)


@dataclass(frozen=True)
class DispatchPolicy:
    concurrency: int = 64
    lease: timedelta = timedelta(seconds=60)
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=10)
    retry_cap: timedelta = timedelta(hours=1)
    scan_limit: int = 10000  # candidate ids read per scan (the embedded server reads every match anyway)
    time_budget: timedelta = timedelta(seconds=30)  # one run stops claiming after this
    linger: timedelta = timedelta(0)  # keep polling for new notifications this long before returning
    idle_poll: timedelta = timedelta(seconds=0.25)
    claimers: int = 4  # claim batches in flight at once (each holds its notifications until they get a send slot)

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchPolicy:
        return cls(concurrency=settings.outbox_concurrency, lease=timedelta(seconds=settings.outbox_lease_seconds),
                   max_attempts=settings.outbox_max_attempts,
                   retry_base=timedelta(seconds=settings.outbox_retry_base_seconds))

    @property
    def claim_batch(self) -> int:
        """Notifications per claim: each claim costs several commands whatever its size, and a
        command's fixed cost on the server is a large part of a small one (32 → 64: +5–8 % drain)."""
        return max(1, self.concurrency)


def backoff(attempt: int, base: timedelta, cap: timedelta, rand: Callable[[], float] = random.random) -> timedelta:
    """Delay before retry number ``attempt`` (1, 2, …): exponential, capped, half of it random."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * rand()


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    failed: int = 0

    def count(self, channel: str) -> None:
        self.sent[channel] = self.sent.get(channel, 0) + 1


class _TransientError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(channel: str, exc: BaseException) -> str:
    if isinstance(exc, WeChatError):
        return f"{channel}: {exc.errcode} {exc.errmsg}".strip()
    return f"{channel}: {type(exc).__name__}: {exc}"


async def _awaitable(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


class _AcceptanceRecorder:
    """Writes "sent" as soon as a channel accepted a notification. When no write is in flight the
    record goes out at once; records that arrive while one is in flight wait for it and then go
    together in one bulk write (an ``update_many`` per channel and last error) — under load this
    halves the database work per message, and each record still waits only for the write before it.

    Not conditional on the claim token: WeChat has accepted, so this must be recorded even if the
    lease ran out meanwhile. Filters list ``_id`` first (see the module docstring).
    """

    def __init__(self, collection: Any, clock: Callable[[], datetime]) -> None:
        self.collection = collection
        self.clock = clock
        self.pending: list[tuple[Any, str, str | None, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def record(self, notification_id: Any, channel: str, last_error: str | None) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((notification_id, channel, last_error, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            groups: dict[tuple[str, str | None], list[Any]] = {}
            for notification_id, channel, last_error, _ in batch:
                groups.setdefault((channel, last_error), []).append(notification_id)
            now = self.clock()
            try:
                result = await self.collection.bulk_write([
                    UpdateMany({"_id": {"$in": ids}, "status": SENDING},
                               {"$set": {"status": SENT, "channel": channel, "sent_at": now, "updated_at": now,
                                         "last_error": last_error}, "$unset": {"lease_until": ""}})
                    for (channel, last_error), ids in groups.items()], ordered=False)
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            lost = len(batch) - result.modified_count
            if lost:
                log.warning("notifications were no longer ours when recorded as sent", extra={"count": lost})
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)


class Dispatcher:
    def __init__(
        self,
        db: AsyncDatabase,
        wechat: WeChatClient | None,
        templates: TemplateBook,
        policy: DispatchPolicy = DispatchPolicy(),
        *,
        holder: str = INSTANCE_ID,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        journal: AcceptanceJournal | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.db = db
        self.collection = db[COLLECTION]
        self.wechat = wechat if wechat is not None and wechat.configured else None
        self.templates = templates
        self.policy = policy
        self.holder = holder
        self.clock = clock
        self.journal = journal
        self.stopping = stopping or asyncio.Event()  # set: claim nothing more, finish what is in flight
        self._acceptances = _AcceptanceRecorder(self.collection, clock)

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> DispatchStats:
        """Deliver everything due now (until the time budget is spent); returns what happened.

        A pipeline: up to ``claimers`` claim batches run at once (each a few round trips to the
        database), and their notifications are sent with at most ``concurrency`` sends at once (a
        semaphore). A claimed notification waits at most for a free send slot, well inside its lease.
        """
        stats = DispatchStats()
        sends = asyncio.Semaphore(self.policy.concurrency)
        claims = asyncio.Semaphore(self.policy.claimers)
        claiming: set[asyncio.Task[None]] = set()
        sending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        deadline = started + self.policy.time_budget.total_seconds()
        linger_until = started + self.policy.linger.total_seconds()
        idle_poll = self.policy.idle_poll.total_seconds()

        async def claim_and_send(chunk: list[tuple[Any, str]]) -> None:
            try:
                claimed = await self._claim(chunk)
                stats.claimed += len(claimed)
                for document, rendered in claimed:
                    await sends.acquire()  # holding the claim slot meanwhile: claims never run far ahead
                    task = asyncio.create_task(self._deliver_in_slot(sends, document, rendered, stats))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
            finally:
                claims.release()

        if self.journal is not None:
            await self.journal.replay(self.collection)
        try:
            while time.monotonic() < deadline and not self.stopping.is_set():
                candidates = await self._candidates()
                if not candidates:
                    if time.monotonic() + idle_poll > linger_until:
                        break
                    with contextlib.suppress(TimeoutError):  # new notifications go out within this, not the next tick
                        await asyncio.wait_for(self.stopping.wait(), idle_poll)
                    continue
                for start in range(0, len(candidates), self.policy.claim_batch):
                    if time.monotonic() >= deadline or self.stopping.is_set():
                        break
                    await claims.acquire()
                    task = asyncio.create_task(claim_and_send(candidates[start:start + self.policy.claim_batch]))
                    claiming.add(task)
                    task.add_done_callback(claiming.discard)
                if claiming:  # the next scan should not find our own claims in flight
                    await asyncio.gather(*claiming, return_exceptions=True)
        finally:
            for group in (claiming, sending):
                if group:
                    await asyncio.gather(*group, return_exceptions=True)
            if self.journal is not None:
                self.journal.confirm_all()
        return stats

    async def _deliver_in_slot(
        self, slots: asyncio.Semaphore, document: dict[str, Any], rendered: Rendered, stats: DispatchStats
    ) -> None:
        try:
            await self.deliver(document, rendered, stats)
        except Exception:
            # the lease runs out and another run retries it; nothing is lost
            log.exception("notification delivery crashed", extra={"notification": str(document["_id"])})
        finally:
            slots.release()

    async def _candidates(self) -> list[tuple[Any, str]]:
        """Ids worth claiming, oldest first: ``(id, "due")`` and ``(id, "expired")`` (lease ran out)."""
        now = self.clock()
        expired = await self.collection.find(
            {"status": SENDING, "lease_until": {"$lte": now}}, {"_id": 1}
        ).limit(self.policy.scan_limit).to_list()
        due = await self.collection.find(
            {"status": PENDING, "due_at": {"$lte": now}}, {"_id": 1}
        ).sort("due_at", ASCENDING).limit(self.policy.scan_limit).to_list()
        return [(d["_id"], "expired") for d in expired] + [(d["_id"], "due") for d in due]

    async def _claim(self, chunk: list[tuple[Any, str]]) -> list[tuple[dict[str, Any], Rendered]]:
        now = self.clock()
        token = uuid.uuid4().hex
        claim = {"$set": {"status": SENDING, "lease_until": now + self.policy.lease, "claimed_by": self.holder,
                          "claim_token": token, "claimed_at": now, "updated_at": now},
                 "$inc": {"attempts": 1}}
        due = [i for i, source in chunk if source == "due"]
        expired = [i for i, source in chunk if source == "expired"]
        if due:
            result = await self.collection.update_many(
                {"_id": {"$in": due}, "status": PENDING, "due_at": {"$lte": now}}, claim)
            OUTBOX_CLAIMS.labels("new").inc(result.modified_count)
        if expired:
            result = await self.collection.update_many(
                {"_id": {"$in": expired}, "status": SENDING, "lease_until": {"$lte": now}}, claim)
            OUTBOX_CLAIMS.labels("reclaimed").inc(result.modified_count)
        documents = await self.collection.find(
            {"_id": {"$in": [i for i, _ in chunk]}, "claim_token": token}).to_list()
        claimed = [(doc, self.templates.render(doc["kind"], doc.get("payload") or {})) for doc in documents]
        await asyncio.gather(
            inbox.add_copies(self.db, [inbox.entry_for(doc, r.title, r.text, r.page) for doc, r in claimed]),
            self._prefetch_channels(claimed, now))
        await self._hold_grants(claimed)
        return claimed

    async def _hold_grants(self, claimed: list[tuple[dict[str, Any], Rendered]]) -> None:
        """Take the grants a claimed batch will use in one bulk write (``grants.hold_grants``)
        instead of one write per notification; skipped where the prefetched state shows no grant.
        Only first attempts (which cannot hold a grant yet); a later attempt, and a notification
        whose (user, template) already appeared in the batch, take theirs at send time
        (``grants.hold_grant``, which also finds an earlier hold). A crash after this is harmless:
        the reclaimed attempt finds its hold."""
        holds: dict[tuple[str, str], dict[str, Any]] = {}
        for doc, rendered in claimed:
            state = doc.get("_grant_state")
            if self.wechat is None or rendered.template_id is None or rendered.data is None or not state:
                continue
            if doc.get("attempts", 1) > 1 or state.get("available", 0) <= 0:
                continue
            holds.setdefault((doc["openid"], rendered.template_id), doc)
        held = await grants.hold_grants(
            self.db, [(openid, template_id, str(doc["_id"])) for (openid, template_id), doc in holds.items()])
        for doc in holds.values():
            doc["_held"] = str(doc["_id"]) in held

    async def _prefetch_channels(self, claimed: list[tuple[dict[str, Any], Rendered]], now: datetime) -> None:
        """Read the grants and the customer-service windows of a claimed batch in two queries
        instead of two per notification (the database, not WeChat, limits the send rate). A value
        that changes before the send is harmless: taking a grant is conditional, and WeChat answers
        45015 for a window that closed."""
        if self.wechat is None or not claimed:
            return
        openids = list({doc["openid"] for doc, _ in claimed})
        template_ids = list({r.template_id for _, r in claimed if r.template_id})
        grant_query = self.db[grants.COLLECTION].find(
            {"openid": {"$in": openids}, "template_id": {"$in": template_ids}},
            {"openid": 1, "template_id": 1, "available": 1, "holders": 1}).to_list() if template_ids else []
        window_query = self.db[users.COLLECTION].find(
            {"_id": {"$in": openids}, "last_message_at": {"$gt": now - users.SERVICE_WINDOW}}, {"_id": 1}).to_list()
        found_states, found_users = await asyncio.gather(_awaitable(grant_query), window_query)
        states = {(state["openid"], state["template_id"]): state for state in found_states}
        opened = {user["_id"] for user in found_users}
        for doc, rendered in claimed:
            doc["_grant_state"] = states.get((doc["openid"], rendered.template_id or ""))
            doc["_window_open"] = doc["openid"] in opened

    # --- one notification ------------------------------------------------------------------------

    async def deliver(self, document: dict[str, Any], rendered: Rendered, stats: DispatchStats) -> None:
        errors: list[str] = []
        try:
            if await self._try_subscribe(document, rendered, errors):
                self._journal(document, SUBSCRIBE)
                return await self._mark_sent(document, SUBSCRIBE, errors, stats)
            if await self._try_customer_service(document, rendered, errors):
                self._journal(document, CUSTOMER_SERVICE)
                await self._mark_sent(document, CUSTOMER_SERVICE, errors, stats)
                return await self._give_back_grant(document, rendered)
        except _TransientError as exc:
            errors.append(exc.reason)
            return await self._retry_later(document, rendered, errors, stats)
        OUTBOX_SENDS.labels(INBOX, "sent").inc()
        await self._mark_sent(document, INBOX, errors, stats)
        await self._give_back_grant(document, rendered)

    async def _try_subscribe(self, document: dict[str, Any], rendered: Rendered, errors: list[str]) -> bool:
        template_id = rendered.template_id
        if self.wechat is None or template_id is None or rendered.data is None:
            return False
        openid, holder = document["openid"], str(document["_id"])
        # a read first (usually prefetched for the batch): most users hold no grant, and a read is
        # cheaper than a write that matches nothing
        if "_grant_state" in document:
            state = document["_grant_state"]
        else:
            state = await self.db[grants.COLLECTION].find_one({"openid": openid, "template_id": template_id},
                                                              {"available": 1, "holders": 1})
        if not state or (state.get("available", 0) <= 0 and holder not in state.get("holders", [])):
            return False
        if "_held" in document:  # taken for the whole claimed batch
            if not document["_held"]:
                return False
        elif not await grants.hold_grant(self.db, openid, template_id, holder,
                                         may_hold_already=document.get("attempts", 1) > 1):
            return False
        document["_holds"] = template_id
        try:
            await self.wechat.send_subscribe_message(openid, template_id, rendered.data, rendered.page,
                                                     retry=NO_RETRY)
        except Exception as exc:
            transient = not isinstance(exc, WeChatError) or exc.transient
            self._count_failure(SUBSCRIBE, exc, transient)
            if transient:  # the notification keeps its grant for the retry
                raise _TransientError(_describe(SUBSCRIBE, exc)) from None
            # 43101: WeChat had no grant, so there is nothing to give back
            no_grant = isinstance(exc, WeChatError) and exc.errcode == NO_SUBSCRIPTION
            await grants.release_grant(self.db, openid, template_id, holder, used=no_grant)
            document.pop("_holds", None)
            errors.append(_describe(SUBSCRIBE, exc))
            return False
        return True

    async def _give_back_grant(self, document: dict[str, Any], rendered: Rendered) -> None:
        """A notification that may hold a grant (taken in this or an earlier, crashed or failed
        attempt) and ends without a subscribe message gives it back."""
        template_id = document.get("_holds") or rendered.template_id
        if template_id and (document.get("_holds") or document.get("attempts", 1) > 1):
            await grants.release_grant(self.db, document["openid"], template_id, str(document["_id"]), used=False)

    async def _try_customer_service(self, document: dict[str, Any], rendered: Rendered, errors: list[str]) -> bool:
        if self.wechat is None:
            return False
        if "_window_open" in document:
            if not document["_window_open"]:
                return False
        elif not await users.in_service_window(self.db, document["openid"], self.clock()):
            return False
        try:
            await self.wechat.send_custom_text(document["openid"], rendered.text, retry=NO_RETRY)
        except Exception as exc:
            transient = not isinstance(exc, WeChatError) or exc.transient
            self._count_failure(CUSTOMER_SERVICE, exc, transient)
            if transient:
                raise _TransientError(_describe(CUSTOMER_SERVICE, exc)) from None
            errors.append(_describe(CUSTOMER_SERVICE, exc))
            return False
        return True

    @staticmethod
    def _count_failure(channel: str, exc: BaseException, transient: bool) -> None:
        OUTBOX_SENDS.labels(channel, "transient_error" if transient else "permanent_error").inc()
        if not isinstance(exc, WeChatError):
            log.warning("unexpected error while sending", exc_info=exc, extra={"channel": channel})

    def _journal(self, document: dict[str, Any], channel: str) -> None:
        if self.journal is not None:
            self.journal.accepted(document["_id"], channel)

    async def _mark_sent(self, document: dict[str, Any], channel: str, errors: list[str], stats: DispatchStats) -> None:
        now = self.clock()
        try:
            await self._acceptances.record(document["_id"], channel, "; ".join(errors) or None)
        except Exception:
            if self.journal is not None:
                self.journal.unconfirmed = True  # replayed from the file at the next run
            raise
        if channel != INBOX:
            OUTBOX_SENDS.labels(channel, "sent").inc()
        OUTBOX_DELAY.labels(channel).observe(max((now - document["due_at"]).total_seconds(), 0.0))
        stats.count(channel)

    async def _retry_later(
        self, document: dict[str, Any], rendered: Rendered, errors: list[str], stats: DispatchStats
    ) -> None:
        now = self.clock()
        attempts = document.get("attempts", 1)
        reason = "; ".join(errors)
        if attempts >= self.policy.max_attempts:
            await self._give_back_grant(document, rendered)
            update = {"$set": {"status": FAILED, "failed_at": now, "updated_at": now, "last_error": reason},
                      "$unset": {"lease_until": ""}}
            stats.failed += 1
            OUTBOX_FAILED.inc()
            log.warning("notification failed after its last attempt",
                        extra={"notification": str(document["_id"]), "attempts": attempts, "reason": reason})
        else:
            delay = backoff(attempts, self.policy.retry_base, self.policy.retry_cap)
            update = {"$set": {"status": PENDING, "due_at": now + delay, "updated_at": now, "last_error": reason},
                      "$unset": {"lease_until": ""}}
            stats.retried += 1
        await self.collection.update_one(
            {"_id": document["_id"], "status": SENDING, "claim_token": document["claim_token"]}, update)


# --- jobs ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class DispatchControl:
    """Per application: the process's acceptance journal and the graceful stop of its runs."""

    journal: AcceptanceJournal
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    idle: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


DISPATCH: web.AppKey[DispatchControl] = web.AppKey("dispatch")


async def dispatch_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context, after the scheduler's: on shutdown the running dispatch stops claiming and
    finishes its sends (so their acceptances are recorded) before the scheduler cancels its jobs."""
    control = DispatchControl(AcceptanceJournal(app[SETTINGS].data_dir, INSTANCE_ID))
    control.idle.set()
    app[DISPATCH] = control
    try:
        yield
    finally:
        control.stopping.set()
        try:
            await asyncio.wait_for(control.idle.wait(), SHUTDOWN_GRACE.total_seconds())
        except TimeoutError:
            log.warning("outbox dispatch still running at shutdown; its leases will expire and be reclaimed")
        control.journal.close()


def dispatcher_for(app: web.Application) -> Dispatcher | None:
    templates = app.get(TEMPLATES)  # absent when the template file failed validation (readiness says why)
    if templates is None:
        return None
    control = app.get(DISPATCH)
    policy = dataclasses.replace(DispatchPolicy.from_settings(app[SETTINGS]), linger=DISPATCH_LINGER)
    return Dispatcher(app[DB], app.get(WECHAT), templates, policy,
                      journal=control.journal if control else None, stopping=control.stopping if control else None)


async def dispatch_job(app: web.Application) -> None:
    dispatcher = dispatcher_for(app)
    control = app.get(DISPATCH)
    if dispatcher is None or dispatcher.stopping.is_set():
        return
    if control is not None:
        control.idle.clear()
    try:
        stats = await dispatcher.run()
    finally:
        if control is not None:
            control.idle.set()
    if stats.claimed:
        log.info("outbox dispatched", extra={"claimed": stats.claimed, "sent": stats.sent,
                                             "retried": stats.retried, "failed": stats.failed})


async def outbox_stats_job(app: web.Application) -> None:
    """Refresh the outbox gauges (depth by status, age of the oldest due pending notification)."""
    collection = app[DB][COLLECTION]
    now = datetime.now(UTC)
    OUTBOX_DEPTH.labels(PENDING).set(await collection.count_documents({"status": PENDING, "due_at": {"$lte": now}}))
    OUTBOX_DEPTH.labels(SENDING).set(await collection.count_documents({"status": SENDING}))
    oldest = await collection.find({"status": PENDING, "due_at": {"$lte": now}}, {"due_at": 1}).sort(
        "due_at", ASCENDING).limit(1).to_list()
    OUTBOX_OLDEST.set((now - oldest[0]["due_at"]).total_seconds() if oldest else 0.0)


def dispatch_jobs() -> list[Job]:
    """Not exclusive: claims make concurrent dispatchers in several instances safe."""
    return [Job("outbox-dispatch", DISPATCH_EVERY, dispatch_job),
            Job("outbox-stats", timedelta(seconds=15), outbox_stats_job)]
