"""The deliverer: sends the webhook outbox from every worker process, at least once, never from a request.

Each pass claims the due deliveries under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so deliverers of
several processes never take the same row; SQLite's single writer claims one pass at a time), POSTs each
one signed (signature.py) with a short timeout, without following redirects or reading the answer's body,
and records the outcome fenced by its attempt number: delivered on a 2xx; else due again after a backoff
with jitter (backoff.py), or dead after `webhook_max_attempts`, or at once when its URL is refused. A process
that dies mid-POST leaves its lease to expire and the delivery goes out again: the receiver deduplicates by
`Livebatch-Delivery` (the body's `id`), the same on every attempt.

Nothing here touches a batch. A receiver that fails or hangs costs this loop's time, never a batch's: the
row was written with the event, and the batch went on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx

from livebatch import __version__
from livebatch.clock import iso
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.webhooks import backoff, repository
from livebatch.webhooks.repository import Claimed
from livebatch.webhooks.signature import HEADER, sign
from livebatch.webhooks.urls import UnsafeUrl, check_url, refused_addresses

logger = logging.getLogger("livebatch.webhooks")
PASS_SIZE = 20


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    final: bool = False  # no point in trying again (the webhook is gone, its URL is refused)


def body_of(claim: Claimed, public_url: str) -> bytes:
    """The JSON body of a delivery: the same bytes on every attempt. A `pagePath` in its data becomes `pageUrl`
    on this deployment's public URL."""
    data = json.loads(claim.data)
    path = data.pop("pagePath", None)
    if isinstance(path, str):
        data["pageUrl"] = public_url.rstrip("/") + path
    envelope = {"id": str(claim.id), "type": claim.event, "createdAt": iso(claim.created_at), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class Deliverer:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        lease: timedelta | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._now = clock
        self._rng = rng or random.Random()
        self._timeout_s = settings.webhook_timeout_s
        # Longer than any attempt can take, so a live attempt never loses its delivery to another deliverer.
        self._lease = lease or timedelta(seconds=max(30.0, 3 * settings.webhook_timeout_s))
        self._http = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(settings.webhook_timeout_s), follow_redirects=False
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="livebatch-webhooks")

    async def aclose(self) -> None:
        """Stops the loop; a POST under way is abandoned, and its delivery goes out again once its lease expires."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5)
        await self._http.aclose()

    async def run_forever(self) -> None:
        while True:
            try:
                handled = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook pass failed; trying again")
                handled = 0
            if handled < PASS_SIZE:  # a full pass: more may be due at once
                await asyncio.sleep(self._settings.webhook_poll_s)

    async def deliver_due(self) -> int:
        """One pass: claims what is due, sends it, records each outcome; how many deliveries it attempted."""
        # Asked first on the reading engine: on SQLite a claim takes the one write lock, which an idle pass
        # every second should not take from the pipeline.
        async with self._db.read_session() as session:
            if not await repository.any_due(session, now=self._now()):
                return 0
        async with self._db.session() as session:
            claimed = await repository.claim_due(session, now=self._now(), lease=self._lease, limit=PASS_SIZE)
            webhooks = await repository.webhooks_of(session, list({c.user_id for c in claimed})) if claimed else {}
            targets = {user: Target(w.url, w.secret) for user, w in webhooks.items()}
            await session.commit()
        await asyncio.gather(*(self._deliver(claim, targets.get(claim.user_id)) for claim in claimed))
        return len(claimed)

    async def _deliver(self, claim: Claimed, target: Target | None) -> None:
        try:
            outcome = await self._send(claim, target)
        except Exception as exc:  # a bug here must not stop the loop: count it as a failed attempt
            logger.exception("webhook delivery %s crashed", claim.id)
            outcome = Outcome(error=f"Internal error: {type(exc).__name__}")
        await self._record(claim, outcome)

    async def _send(self, claim: Claimed, target: Target | None) -> Outcome:
        if target is None:
            return Outcome(error="The webhook was removed.", final=True)
        allow_private = self._settings.webhook_allow_private
        try:
            url = check_url(target.url, allow_private=allow_private)
        except UnsafeUrl as exc:
            return Outcome(error=f"Refused: {exc}", final=True)
        body = body_of(claim, self._settings.public_url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"livebatch-webhooks/{__version__}",
            HEADER: sign(target.secret, int(self._now().timestamp()), body),
            "Livebatch-Delivery": str(claim.id),
            "Livebatch-Event": claim.event,
            "Livebatch-Attempt": str(claim.attempt),
        }
        try:
            # One deadline for the whole exchange: resolving the name, connecting, sending, the answer's status.
            async with asyncio.timeout(self._timeout_s):
                if not allow_private:
                    await self._check_resolved(url)
                # The answer's body is never read: a receiver cannot make us download anything.
                async with self._http.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
        except UnsafeUrl as exc:
            return Outcome(error=f"Refused: {exc}", final=True)
        except TimeoutError:
            return Outcome(error=f"No answer within {self._timeout_s:g}s")
        except httpx.HTTPError as exc:
            return Outcome(error=f"Could not deliver: {type(exc).__name__}{_detail(exc)}")
        if 200 <= status < 300:
            return Outcome(status_code=status)
        moved = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Outcome(status_code=status, error=f"The receiver answered HTTP {status}{moved}")

    async def _check_resolved(self, url: str) -> None:
        """Refuses a name that resolves to a non-public address (checked again at each attempt: DNS may change)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError:
            return  # unresolvable: the POST fails and says so
        refused = refused_addresses([str(info[4][0]) for info in infos], allow_private=False)
        if refused:
            raise UnsafeUrl(f"{host} resolves to {refused[0]}, not a public address.")

    async def _record(self, claim: Claimed, outcome: Outcome) -> None:
        now = self._now()
        retry_at = None
        if outcome.error is not None and not outcome.final:
            wait = backoff.retry_after_s(
                claim.attempt,
                max_attempts=self._settings.webhook_max_attempts,
                base_s=self._settings.webhook_retry_base_s,
                cap_s=self._settings.webhook_retry_max_s,
                rng=self._rng,
            )
            retry_at = None if wait is None else now + timedelta(seconds=wait)
        try:
            async with self._db.session() as session:
                recorded = await repository.record_outcome(
                    session,
                    claim.id,
                    claim.attempt,
                    now=now,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    retry_at=retry_at,
                )
                await session.commit()
        except Exception:
            logger.exception("could not record webhook delivery %s; it goes out again when its lease expires", claim.id)
            return
        if not recorded:
            return
        fields = {"delivery": str(claim.id), "event": claim.event, "attempt": claim.attempt}
        if outcome.error is None:
            logger.info("webhook delivered", extra=fields | {"status_code": outcome.status_code})
        elif retry_at is not None:
            logger.warning(
                "webhook delivery failed: %s; next attempt at %s", outcome.error, iso(retry_at), extra=fields
            )
        else:
            logger.error("webhook delivery dead after %d attempts: %s", claim.attempt, outcome.error, extra=fields)


def _detail(exc: httpx.HTTPError) -> str:
    text = str(exc).strip().splitlines()
    return f" ({text[0][:200]})" if text and text[0] else ""
