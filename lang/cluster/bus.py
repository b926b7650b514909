"""The cluster bus (SPEC §16): evt processes exchanging broadcasts and published values
through Redis Pub/Sub, on `coredis`. It knows nothing of the language: it carries JSON
envelopes on named channels and keeps a presence count per process; lang.interpreter.cluster
says what the envelopes mean.

Rules of this module (the lessons of Socket.IO's Redis adapter, channels_redis, Centrifugo):
- One channel per server, per room and per topic: a process subscribes only to what it has a
  reason to read (a room's channel while it has a member of that room), so a process with no
  member of a room never receives that room's traffic.
- Every envelope carries its origin (this process's random id); a process drops its own
  echoes. Delivery is at most once: nothing is stored or retried.
- `publish` never waits for Redis: envelopes go to an outbox that one task sends in batches
  (a pipeline). While the bus is down, what cannot be sent is counted (`unpublished`), never
  queued for later, and the count is reported when the bus comes back and at the end.
- The subscriber reconnects with backoff (BACKOFF: 0.1 s doubling to 1 s) and subscribes
  again to every channel it wants, so subscriptions come back after a Redis restart
  (ActionCable's bug). Each outage is reported once (`on_error`), its end once (`on_up`).
- Presence: each process keeps `PREFIX:presence:ORIGIN` (a JSON map of counts) with a TTL and
  refreshes it every TTL/3 (at most each second); the others' counts are read at the same
  pace, so a dead process's counts vanish within its TTL.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

BACKOFF = (0.1, 1.0)  # seconds: the first wait before reconnecting, the longest
OUTBOX = 100_000  # envelopes waiting to be sent; more while Redis is slow are unpublished
BATCH = 512  # envelopes in one pipeline


@dataclass
class BusOptions:
    url: str
    prefix: str = "evt"
    presence_ttl: float = 10.0
    connect_timeout: float = 5.0


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        if u.password is None:
            return url
        netloc = f"{u.username + ':***@' if u.username else ':***@'}{u.hostname or ''}"
        if u.port is not None:
            netloc += f":{u.port}"
        return u._replace(netloc=netloc).geturl()
    except ValueError:
        return "(an unreadable url)"


def _no_count(name: str, n: float) -> None:
    pass


def _nothing() -> None:
    pass


def _reason(e: BaseException) -> str:
    """The innermost error of an exception group, in words."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    text = str(e) or type(e).__name__
    return text[0].lower() + text[1:] if text else text


class Bus:
    """One process's membership of the cluster. `deliver(channel, envelope)` is called for
    every envelope another process sent on a channel this one subscribes to; `on_error(text)`
    when the bus is lost (or cannot be reached); `on_up(unpublished)` when it is back, with
    the number of envelopes that could not be sent meanwhile."""

    def __init__(self, opts: BusOptions, deliver: Callable[[str, dict], None],
                 on_error: Callable[[str], None], on_up: Callable[[int], None]) -> None:
        self.opts = opts
        self.origin = os.urandom(8).hex()  # (uuid cost 2 ms of every start to import)
        self._deliver = deliver
        self._on_error = on_error
        self._on_up = on_up
        self.wanted: dict[str, None] = {}  # channels to be subscribed, in order
        self.up = False
        self.published = 0
        self.received = 0  # envelopes read from Redis, own echoes included
        self.unpublished = 0  # in all
        self._unpublished_down = 0  # during the current outage
        self.malformed = 0
        self._outbox: deque[tuple[str, str]] = deque()
        self._wake = anyio.Event()
        self._client: Any = None
        self._pubsub: Any = None
        self.counts: Callable[[], dict[str, int]] = dict  # this process's, for presence
        self.count: Callable[[str, float], None] = _no_count  # metrics: received, published...
        self.on_presence: Callable[[], None] = _nothing  # the others' counts changed
        self._task_status: Any = None
        self.presence_others: dict[str, int] = {}
        self._down_reported = False
        self._closing = False

    # ------------------------------------------------------------ names

    def channel(self, *parts: str) -> str:
        return ":".join((self.opts.prefix, *parts))

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Connect and subscribe (task_status.started() once the first attempt succeeded or
        failed, within connect_timeout), then keep the bus up until cancelled."""
        import coredis
        from coredis.retry import NoRetryPolicy

        self._task_status = task_status
        try:
            self._client = coredis.Redis.from_url(
                self.opts.url, decode_responses=True, retry_policy=NoRetryPolicy(),
                connect_timeout=self.opts.connect_timeout, stream_timeout=None)
        except Exception as e:  # a URL coredis cannot read
            self._report_down(f"cannot use {safe_url(self.opts.url)}: {_reason(e)}")
            self._started()
            return
        delay = BACKOFF[0]
        while not self._closing:
            try:
                async with self._client:
                    async with anyio.create_task_group() as tg:
                        with anyio.fail_after(self.opts.connect_timeout):
                            await self._client.ping()
                        tg.start_soon(self._send_loop)
                        tg.start_soon(self._presence_loop)
                        await self._subscribe_and_read()
            except Exception as e:
                if self.up:
                    delay = BACKOFF[0]
                self._went_down(e)
            self._started()
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    def _started(self) -> None:
        ts, self._task_status = self._task_status, None
        if ts is not None:
            ts.started()

    async def _subscribe_and_read(self) -> None:
        from coredis.retry import NoRetryPolicy

        channels = list(self.wanted)
        async with self._client.pubsub(retry_policy=NoRetryPolicy(), channels=channels or None,
                                       ignore_subscribe_messages=True,
                                       subscription_timeout=self.opts.connect_timeout) as ps:
            self._pubsub = ps
            missing = [c for c in self.wanted if c not in channels]  # added meanwhile
            if missing:
                await ps.subscribe(*missing)
            self._came_up()
            self._started()
            while True:
                msg = await ps.get_message()
                if msg is None or msg.get("type") != "message":
                    continue
                self.received += 1
                self.count("cluster_received", 1)
                self._take(msg["channel"], msg["data"])

    def _take(self, channel: str, data: str) -> None:
        try:
            envelope = json.loads(data)
            if type(envelope) is not dict:
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            self.malformed += 1  # not ours (someone else publishing on our channels)
            return
        if envelope.get("origin") == self.origin:
            return  # our own echo
        self._deliver(channel, envelope)

    def _came_up(self) -> None:
        was_down = self._down_reported
        self.up = True
        self._down_reported = False
        if was_down:
            lost, self._unpublished_down = self._unpublished_down, 0
            self._on_up(lost)

    def _went_down(self, e: BaseException) -> None:
        self.up = False
        self._pubsub = None
        if not self._closing:
            self._report_down(f"the bus at {safe_url(self.opts.url)} is unreachable: "
                              f"{_reason(e)}")

    def _report_down(self, text: str) -> None:
        if not self._down_reported:
            self._down_reported = True
            self._on_error(text)

    # ------------------------------------------------------------ publishing

    def publish(self, channel: str, envelope: dict) -> None:
        """Send an envelope (with this process's origin) without waiting; counted as
        unpublished when the bus is down or the outbox full."""
        envelope["origin"] = self.origin
        if not self.up or len(self._outbox) >= OUTBOX:
            self._lost(1)
            return
        self._outbox.append((channel, json.dumps(envelope, ensure_ascii=False,
                                                 separators=(",", ":"))))
        self._wake.set()

    def _lost(self, n: int) -> None:
        self.unpublished += n
        self._unpublished_down += n
        self.count("cluster_unpublished", n)

    async def _send_loop(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
            try:
                if len(batch) == 1:
                    await self._client.publish(*batch[0])
                else:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for channel, text in batch:
                            pipe.publish(channel, text)
                self.published += len(batch)
                self.count("cluster_published", len(batch))
            except Exception:
                self._lost(len(batch) + len(outbox))  # at most once: not sent again
                outbox.clear()
                raise

    async def flush(self, seconds: float) -> None:
        """Give what is in the outbox up to `seconds` to be sent (at the program's end)."""
        with anyio.move_on_after(seconds):
            while self._outbox and self.up:
                await anyio.sleep(0.01)
        if self._outbox:
            self._lost(len(self._outbox))
            self._outbox.clear()

    # ------------------------------------------------------------ subscriptions

    async def subscribe(self, channel: str) -> None:
        """Add a channel; returns once Redis confirmed it (or at once while the bus is down:
        it is subscribed when the bus is back)."""
        if channel in self.wanted:
            return
        self.wanted[channel] = None
        ps = self._pubsub
        if ps is not None:
            try:
                await ps.subscribe(channel)
            except Exception:
                pass  # the connection is going: the reconnect subscribes to it

    async def unsubscribe(self, channel: str) -> None:
        if self.wanted.pop(channel, 0) is None:
            ps = self._pubsub
            if ps is not None:
                try:
                    await ps.unsubscribe(channel)
                except Exception:
                    pass

    # ------------------------------------------------------------ presence

    def others(self, key: str) -> int:
        """The count `key` summed over the other live processes (as last read)."""
        return self.presence_others.get(key, 0)

    async def _presence_loop(self) -> None:
        ttl = max(self.opts.presence_ttl, 0.3)
        every = min(1.0, ttl / 3)
        mine = self.channel("presence", self.origin)
        pattern = self.channel("presence", "*")
        while True:
            await self._client.set(mine, json.dumps(self.counts()),
                                   px=max(1, int(ttl * 1000)))
            keys: list[str] = []
            cursor = 0
            while True:
                cursor, found = await self._client.scan(cursor, match=pattern, count=1000)
                keys.extend(k for k in found if k != mine)
                if not cursor:
                    break
            totals: dict[str, int] = {}
            if keys:
                for text in await self._client.mget(keys):
                    try:
                        counts = json.loads(text) if text else {}
                        for k, v in counts.items():
                            if type(v) is int:
                                totals[k] = totals.get(k, 0) + v
                    except (ValueError, AttributeError):
                        continue
            if totals != self.presence_others:
                self.presence_others = totals
                self.on_presence()
            await anyio.sleep(every)

    async def close(self) -> None:
        """Leave the cluster: our presence key is deleted (the others see our peers go
        at once, not after the TTL)."""
        self._closing = True
        client = self._client
        if client is None or not self.up:
            return
        with anyio.move_on_after(1):
            try:
                await client.delete([self.channel("presence", self.origin)])
            except Exception:
                pass
