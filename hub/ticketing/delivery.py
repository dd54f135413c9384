"""The delivery worker: ticket intents from the hub database to the outside systems.

One worker (a thread in `edge-hub serve`, any number of them across hub processes) loops:
claim due intents with a lease (hub.domains.tickets.outbox: two workers never hold the same
one), deliver each through its connector, record the answer in the same transaction that ends
the lease. What goes wrong decides what follows:

- a Retryable error (timeout, 408/425/429/5xx): due again after an exponential backoff with
  jitter (base * 2^(attempt-1), capped at backoff_max_s), or the server's Retry-After if longer;
  given up (status `failed`) once the intent is older than the policy's max_attempts_age_s;
- AuthFailed (401/403): as Retryable, at least 5 minutes apart;
- NotYet (a search that has not caught up with a fresh ticket): retried, without counting
  against the connector's circuit breaker;
- Permanent: `failed` at once, holding its problem's later intents until `tickets retry`;
- a create retried after any failure first looks the ticket up by its correlation key
  (connectors/base.py), so an answer lost after the ticket was made does not make two.
A circuit breaker per connector opens after `breaker_failures` failures in a row; while open the
worker claims nothing for that connector; after `breaker_open_s` one probe (the oldest waiting
intent) is let through; when it succeeds the breaker closes and every waiting intent of that
connector is made due at once, so the backlog is caught up in the order it was made.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Mapping

from hub.connectors.base import AuthFailed, ConnectorError, NotYet, Permanent, Retryable
from hub.domains.tickets import outbox, rules
from hub.domains.tickets.policy import DeliveryPolicy, TicketPolicy
from hub.errors import StoreError
from hub.store import Store

log = logging.getLogger("hub.delivery")


# The settings are the policy's [tickets.delivery] table: lease_s, batch, backoff_base_s,
# backoff_max_s, jitter (+- this fraction of each backoff), breaker_failures, breaker_open_s,
# idle_s (sleep when nothing was due), tick_every_s (how often resolve-after-hold runs).
DeliverySettings = DeliveryPolicy


class Breaker:
    """closed -> (n failures) open -> (open_s) half-open: one probe -> closed or open again."""

    def __init__(self, failures: int, open_s: float):
        self.failures_to_open = failures
        self.open_s = open_s
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probing else "open"

    def allow(self, now: float) -> int:
        """How many intents may be claimed now: many (closed), 1 (a probe) or 0 (open)."""
        if self.opened_at is None:
            return 1_000_000
        if self.probing:
            return 0        # the probe is out
        if now - self.opened_at >= self.open_s:
            self.probing = True
            return 1
        return 0

    def success(self) -> bool:
        """Record a success; return True if this closed an open breaker (catch up now)."""
        recovered = self.opened_at is not None
        self.failures, self.opened_at, self.probing = 0, None, False
        return recovered

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.failures_to_open:
            self.opened_at, self.probing = now, False


class Worker:
    """Delivers intents for the connectors it is given (name -> initialized connector)."""

    def __init__(self, db: Store, policy: TicketPolicy, connectors: Mapping[str, object],
                 owner: str, settings: DeliverySettings = DeliverySettings(),
                 clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        self.db = db
        self.policy = policy
        self.connectors = dict(connectors)
        self.owner = owner
        self.s = settings
        self.clock = clock
        self.rng = rng
        self.breakers = {n: Breaker(settings.breaker_failures, settings.breaker_open_s)
                         for n in self.connectors}
        self.counts = {"delivered": 0, "retried": 0, "failed": 0, "lost_lease": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self.failed = threading.Event()

    def backoff(self, attempts: int) -> float:
        delay = min(self.s.backoff_max_s, self.s.backoff_base_s * 2 ** max(0, attempts - 1))
        return delay * (1 + self.s.jitter * (2 * self.rng() - 1))

    def run_once(self) -> int:
        """Claim what is due and deliver it; return how many intents were tried."""
        now = self.clock()
        if now >= self._next_tick:
            self._next_tick = now + self.s.tick_every_s
            with self.db.transaction() as tx:
                rules.tick(tx, self.clock, self.policy)
        claimed = []
        free = []
        for name, breaker in self.breakers.items():
            n = breaker.allow(now)
            if n == 1:   # a probe: the oldest waiting intent, whatever its backoff said
                with self.db.transaction() as tx:
                    tx.execute("UPDATE ticket_intents SET next_at = ? WHERE id = (SELECT"
                               " MIN(id) FROM ticket_intents WHERE connector = ? AND"
                               " status = 'pending')", (now, name))
                    got = outbox.claim(tx, self.clock, self.owner, self.s.lease_s, 1, [name])
                if not got:
                    breaker.probing = False
                    breaker.opened_at = now - breaker.open_s  # nothing to probe with yet
                claimed.extend(got)
            elif n:
                free.append(name)
        if free:
            with self.db.transaction() as tx:
                claimed.extend(outbox.claim(tx, self.clock, self.owner, self.s.lease_s,
                                            self.s.batch, free))
        claimed.sort(key=lambda c: c.id)
        for i, c in enumerate(claimed):
            if self._stop.is_set():
                self._give_back(claimed[i:])
                break
            self._deliver(c, now)
        return len(claimed)

    def _give_back(self, rest) -> None:
        with self.db.transaction() as tx:
            for c in rest:
                outbox.release(tx, self.clock, c.id, self.owner, "worker stopping",
                               self.clock())

    def _deliver(self, c, claimed_at: float) -> None:
        breaker = self.breakers[c.connector]
        now = self.clock()
        if breaker.state == "open":   # it opened during this batch: not attempted
            with self.db.transaction() as tx:
                outbox.release(tx, self.clock, c.id, self.owner, "circuit open", now)
            return
        if now - claimed_at > self.s.lease_s / 2:
            with self.db.transaction() as tx:
                if not outbox.extend(tx, self.clock, c.id, self.owner, self.s.lease_s):
                    self.counts["lost_lease"] += 1
                    return
        conn = self.connectors[c.connector]
        try:
            result = conn.deliver(c)
        except Permanent as err:
            breaker.success()
            self._failed(c, str(err))
            return
        except NotYet as err:        # the system answered: not a failure of the connector
            self._retry(c, err)
            return
        except Retryable as err:
            breaker.failure(self.clock())
            self._retry(c, err)
            return
        except ConnectorError as err:   # pragma: no cover - every error is one of the above
            self._failed(c, str(err))
            return
        with self.db.transaction() as tx:
            ok = rules.record_delivered(tx, self.clock, c.id, self.owner, result.as_dict(),
                                        self.policy)
        if not ok:
            self.counts["lost_lease"] += 1
            log.warning("delivered after the lease ran out", extra={"intent": c.id})
        self.counts["delivered"] += 1
        log.info("ticket intent delivered", extra={"intent": c.id, "action": c.action,
                                                   "connector": c.connector,
                                                   "key": result.key})
        if breaker.success():
            self._catch_up(c.connector)

    def _catch_up(self, connector: str) -> None:
        """The connector is back: everything waiting for it is due now, oldest first."""
        now = self.clock()
        with self.db.transaction() as tx:
            tx.execute("UPDATE ticket_intents SET next_at = ? WHERE connector = ?"
                       " AND status = 'pending' AND next_at > ?", (now, connector, now))
            n = tx.rowcount
        log.info("connector is back; catching up", extra={"connector": connector,
                                                         "waiting": n})

    def _retry(self, c, err: Retryable) -> None:
        now = self.clock()
        delay = self.backoff(c.attempts)
        if err.retry_after is not None:
            delay = max(delay, min(err.retry_after, self.s.backoff_max_s * 4))
        if isinstance(err, AuthFailed):
            delay = max(delay, 300.0)
        if now - c.created > self.policy.max_attempts_age_s:
            self._failed(c, f"gave up after {c.attempts} attempts: {err}")
            return
        with self.db.transaction() as tx:
            outbox.release(tx, self.clock, c.id, self.owner, str(err), now + delay)
        self.counts["retried"] += 1
        log.warning("ticket intent not delivered; will retry",
                    extra={"intent": c.id, "connector": c.connector, "error": str(err)[:200],
                           "retry_in_s": round(delay, 1), "attempts": c.attempts})

    def _failed(self, c, error: str) -> None:
        with self.db.transaction() as tx:
            outbox.release(tx, self.clock, c.id, self.owner, error, None)
        self.counts["failed"] += 1
        log.error("ticket intent failed; `edge-hub tickets retry` once fixed",
                  extra={"intent": c.id, "connector": c.connector, "error": error[:200]})

    # The thread ------------------------------------------------------------------------------

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self._run, name="hub-delivery", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                n = self.run_once()
                backoff = 0.1
            except StoreError as err:
                log.error("ticket delivery cannot reach the database; will retry",
                          extra={"error": str(err)})
                n = 0
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("the ticket delivery worker failed")
                self.failed.set()
                return
            if not n:
                self._stop.wait(self.s.idle_s)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for conn in self.connectors.values():
            try:
                conn.cleanup()
            except Exception:  # closing a client; nothing to save
                pass
