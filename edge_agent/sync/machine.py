"""The sync connection's states: an enum, a transition table, one locked `fire(event)`.

Events come from two threads: paho's network thread (CONNACK, the link lost, the hub's state
arriving) and the event loop (a connection attempt, our birth published, stop). Both go through
`Machine.fire`, which looks the pair (state, event) up in `TRANSITIONS` under a lock: a listed
pair moves to its target (which may be the same state: the event is expected and changes
nothing), a pair not listed is a bug somewhere and raises `IllegalTransition` (logged once here,
with the state, the event and the session). Events carry the session number of the connection
they belong to; an event of an earlier connection (a late CONNACK, a lost link being torn down)
is stale and dropped.

The states follow the handshake of docs/sync.md: nothing leaves the outbox until the hub's
state says online, the retained copy only gets the birth out, and history waits for an online
state delivered live on this connection (the hub's answer to a birth) and for a birth sent
after the hub came online. Only DRAINING sends outbox rows.

No paho, no asyncio here: the table is tested alone (tests/test_sync_machine.py).
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from typing import NamedTuple

log = logging.getLogger(__name__)


class State(enum.Enum):
    DISCONNECTED = "disconnected"        # no link; the next attempt comes after the backoff
    CONNECTING = "connecting"            # session taken; TCP, TLS and CONNECT under way
    WAITING_FOR_HUB = "waiting-for-hub"  # connected; the hub's state is not online: hold all
    ANNOUNCING = "announcing"            # hub online (retained state only): our birth is built
    AWAITING_ANSWER = "awaiting-answer"  # birth sent on the retained state; waiting for a live one
    ANSWERED = "answered"                # the hub's live online came: our birth is built (again)
    DRAINING = "draining"                # hub answered live and has our birth: rows flow
    STOPPING = "stopping"                # the agent stops: leave with the Will, finish deletes
    STOPPED = "stopped"                  # final


class Event(enum.Enum):
    ATTEMPT = "attempt"          # loop: a session number was taken, a connection is opened
    CONNACK = "connack"          # paho: the broker accepted the connection
    REFUSED = "refused"          # paho: the broker answered CONNECT with an error code
    LOST = "lost"                # paho or loop: the link is gone (socket, timeout, teardown)
    HUB_ONLINE = "hub-online"    # paho: hub state online, the retained copy
    HUB_LIVE = "hub-live"        # paho: hub state online, delivered live (or no gate at all)
    HUB_OFFLINE = "hub-offline"  # paho: hub state offline, empty or unreadable
    BIRTH_SENT = "birth-sent"    # loop: our birth was handed to paho on this connection
    STOP = "stop"                # loop: the service is cancelled
    CLOSED = "closed"            # loop: last deletes and status written; nothing runs any more


S, E = State, Event

# The connection is up (CONNACK seen, not lost).
LINKED = frozenset({S.WAITING_FOR_HUB, S.ANNOUNCING, S.AWAITING_ANSWER, S.ANSWERED, S.DRAINING})
# The hub's state says online (what `status` shows as "hub online").
HUB_ONLINE = frozenset({S.ANNOUNCING, S.AWAITING_ANSWER, S.ANSWERED, S.DRAINING})
# A birth of this connection went out since the hub came online.
HAS_BIRTH = frozenset({S.AWAITING_ANSWER, S.DRAINING})

_HUB_UP = (S.ANNOUNCING, S.AWAITING_ANSWER, S.ANSWERED, S.DRAINING)


def _table() -> dict[tuple[State, Event], State]:
    t: dict[tuple[State, Event], State] = {}

    def on(event: Event, *pairs: tuple[State | tuple[State, ...], State | None]) -> None:
        # (source(s), target); a None target means "stays where it is".
        for sources, target in pairs:
            for source in sources if isinstance(sources, tuple) else (sources,):
                assert (source, event) not in t, f"{source} {event} listed twice"
                t[(source, event)] = target if target is not None else source

    stay = None
    on(E.ATTEMPT, (S.DISCONNECTED, S.CONNECTING))
    # A CONNACK after we gave up on the attempt (timeout) or during the stop changes nothing.
    on(E.CONNACK, (S.CONNECTING, S.WAITING_FOR_HUB),
       ((S.DISCONNECTED, S.STOPPING, S.STOPPED), stay))
    on(E.REFUSED, (S.CONNECTING, S.DISCONNECTED),
       ((S.DISCONNECTED, S.STOPPING, S.STOPPED), stay))
    # Lost: paho saw the link go, or the loop closed it (teardown says it again: no harm).
    on(E.LOST, ((S.CONNECTING,) + tuple(LINKED), S.DISCONNECTED),
       ((S.DISCONNECTED, S.STOPPING, S.STOPPED), stay))
    # Hub states arrive only on a connection (never before its CONNACK); ones still queued when
    # the link went or during the stop change nothing.
    quiet = (S.DISCONNECTED, S.STOPPING, S.STOPPED)
    on(E.HUB_ONLINE, (S.WAITING_FOR_HUB, S.ANNOUNCING),
       (_HUB_UP, stay), (quiet, stay))
    on(E.HUB_LIVE, (S.WAITING_FOR_HUB, S.ANSWERED), (S.ANNOUNCING, S.ANSWERED),
       (S.AWAITING_ANSWER, S.DRAINING), ((S.ANSWERED, S.DRAINING), stay), (quiet, stay))
    on(E.HUB_OFFLINE, (_HUB_UP, S.WAITING_FOR_HUB), (S.WAITING_FOR_HUB, stay), (quiet, stay))
    # A birth counts only while the hub is online: one finished after the hub left (or the
    # link went) does not open the gate when the hub returns; that return brings a new birth.
    on(E.BIRTH_SENT, (S.ANNOUNCING, S.AWAITING_ANSWER), (S.ANSWERED, S.DRAINING),
       ((S.AWAITING_ANSWER, S.DRAINING), stay),
       ((S.DISCONNECTED, S.WAITING_FOR_HUB, S.STOPPING), stay))
    on(E.STOP, ((S.DISCONNECTED, S.CONNECTING) + tuple(LINKED), S.STOPPING),
       (S.STOPPING, stay))
    on(E.CLOSED, (S.STOPPING, S.STOPPED))
    return t


# Every legal (state, event) pair and where it leads; a pair not here is illegal.
TRANSITIONS: dict[tuple[State, Event], State] = _table()


class IllegalTransition(RuntimeError):
    """An event that cannot happen in this state: a bug in the client, not in the network."""

    def __init__(self, state: State, event: Event, session: int | None):
        super().__init__(f"sync: event {event.value} cannot happen in state {state.value}"
                         f" (session {session})")
        self.state, self.event, self.session = state, event, session


class Transition(NamedTuple):
    source: State
    event: Event
    target: State
    session: int | None

    @property
    def changed(self) -> bool:
        return self.source is not self.target


class Machine:
    """The state of one sync client's link, safe to drive from several threads."""

    def __init__(self, history: int = 64):
        self._lock = threading.Lock()
        self._state = State.DISCONNECTED
        self._session: int | None = None
        self.history: collections.deque[Transition] = collections.deque(maxlen=history)
        self.stale = 0      # events of an earlier connection, dropped
        self.illegal = 0    # IllegalTransition raised

    @property
    def state(self) -> State:
        return self._state

    @property
    def session(self) -> int | None:
        """The session of the current (or last) connection attempt."""
        return self._session

    def fire(self, event: Event, session: int | None = None) -> Transition | None:
        """Apply an event; return the transition, or None if the event was stale.

        `session` names the connection the event belongs to (ATTEMPT sets it); None means
        "the current one" (loop events about the client as a whole: STOP, CLOSED).
        """
        with self._lock:
            if event is Event.ATTEMPT:
                if session is None:
                    raise ValueError("ATTEMPT needs the session number of the new connection")
            elif session is not None and session != self._session:
                self.stale += 1
                return None
            source = self._state
            target = TRANSITIONS.get((source, event))
            if target is None:
                self.illegal += 1
                err = IllegalTransition(source, event, session or self._session)
                log.error(str(err))
                raise err
            if event is Event.ATTEMPT:
                self._session = session
            self._state = target
            step = Transition(source, event, target, self._session)
            self.history.append(step)
        if step.changed:
            log.debug("sync state", extra={"from": source.value, "event": event.value,
                                           "to": target.value, "session": self._session})
        return step

    def linked(self, session: int) -> bool:
        """Whether connection `session` is up (CONNACK seen, not lost, not stopping)."""
        with self._lock:
            return self._session == session and self._state in LINKED

    def draining(self, session: int) -> bool:
        """Whether connection `session` may send outbox rows now."""
        with self._lock:
            return self._session == session and self._state is State.DRAINING

    def has_birth(self, session: int) -> bool:
        """Whether connection `session` sent a birth since the hub came online."""
        with self._lock:
            return self._session == session and self._state in HAS_BIRTH

    def hub_online(self) -> bool:
        """Whether the hub's state says online (on the current connection)."""
        return self._state in HUB_ONLINE


def table_markdown() -> str:
    """The transition table as Markdown (docs/sync.md holds this exact text; a test checks).

    One row a state, one column an event; a cell names the state the event leads to, `=` when
    it stays where it is, `-` when the pair is illegal.
    """
    head = "| state \\ event | " + " | ".join(e.value for e in Event) + " |"
    rule = "| --- |" + " --- |" * len(Event)
    rows = [head, rule]
    for state in State:
        cells = []
        for event in Event:
            target = TRANSITIONS.get((state, event))
            cells.append("-" if target is None else "=" if target is state else target.value)
        rows.append(f"| {state.value} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
