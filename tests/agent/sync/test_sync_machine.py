"""The sync link's state machine, without paho: every (state, event) pair, and event sequences.

The grid below is written out by hand, apart from the table in machine.py, so a change to the
table has to be made twice (here and there) on purpose. The property tests run random event
sequences against a model of the flags client.py kept before the machine (connected, hub
online, hub seen live, birth sent, lost): wherever the machine accepts an event, both must
agree on whether the link is up, whether the hub is online and whether rows may flow.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testenv import ROOT, agent_env
from edge_agent.sync import machine as M
from edge_agent.sync.machine import Event, IllegalTransition, Machine, State

E = Event
SHORT = {"dis": State.DISCONNECTED, "con": State.CONNECTING, "wait": State.WAITING_FOR_HUB,
         "ann": State.ANNOUNCING, "awa": State.AWAITING_ANSWER, "ans": State.ANSWERED,
         "dra": State.DRAINING, "stg": State.STOPPING, "std": State.STOPPED}
COLUMNS = (E.ATTEMPT, E.CONNACK, E.REFUSED, E.LOST, E.HUB_ONLINE, E.HUB_LIVE, E.HUB_OFFLINE,
           E.BIRTH_SENT, E.STOP, E.CLOSED)
# "." stays, "X" is illegal, otherwise the state it leads to.
GRID = """
       attempt connack refused lost hub-on hub-live hub-off birth stop closed
dis    con     .       .       .    .      .        .       .     stg  X
con    X       wait    dis     dis  X      X        X       X     stg  X
wait   X       X       X       dis  ann    ans      .       .     stg  X
ann    X       X       X       dis  .      ans      wait    awa   stg  X
awa    X       X       X       dis  .      dra      wait    .     stg  X
ans    X       X       X       dis  .      .        wait    dra   stg  X
dra    X       X       X       dis  .      .        wait    .     stg  X
stg    X       .       .       .    .      .        .       .     .    std
std    X       .       .       .    .      .        .       X     X    X
"""

# How a fresh machine reaches each state (session 1): every state is reachable.
PATHS = {
    State.DISCONNECTED: [],
    State.CONNECTING: [E.ATTEMPT],
    State.WAITING_FOR_HUB: [E.ATTEMPT, E.CONNACK],
    State.ANNOUNCING: [E.ATTEMPT, E.CONNACK, E.HUB_ONLINE],
    State.AWAITING_ANSWER: [E.ATTEMPT, E.CONNACK, E.HUB_ONLINE, E.BIRTH_SENT],
    State.ANSWERED: [E.ATTEMPT, E.CONNACK, E.HUB_LIVE],
    State.DRAINING: [E.ATTEMPT, E.CONNACK, E.HUB_LIVE, E.BIRTH_SENT],
    State.STOPPING: [E.STOP],
    State.STOPPED: [E.STOP, E.CLOSED],
}


def expected() -> dict[tuple[State, Event], State | None]:
    out: dict[tuple[State, Event], State | None] = {}
    lines = [line.split() for line in GRID.strip().splitlines()]
    for row in lines[1:]:
        state = SHORT[row[0]]
        assert len(row) == 1 + len(COLUMNS), row
        for event, cell in zip(COLUMNS, row[1:]):
            out[(state, event)] = None if cell == "X" else state if cell == "." else SHORT[cell]
    return out


def reach(state: State) -> Machine:
    m = Machine()
    for event in PATHS[state]:
        m.fire(event, 1 if event is E.ATTEMPT else None)
    assert m.state is state
    return m


def test_the_grid_covers_every_state_and_event():
    assert set(COLUMNS) == set(Event) and len(COLUMNS) == len(Event)
    assert set(SHORT.values()) == set(State)
    assert set(expected()) == {(s, e) for s in State for e in Event}


@pytest.mark.parametrize("state,event", [(s, e) for s in State for e in Event],
                         ids=lambda v: v.value)
def test_every_state_and_event_pair_does_what_the_grid_says(state, event, caplog):
    want = expected()[(state, event)]
    m = reach(state)
    before = len(m.history)
    session = 2 if event is E.ATTEMPT else None
    if want is None:
        assert (state, event) not in M.TRANSITIONS
        with caplog.at_level(logging.ERROR, logger=M.__name__):
            with pytest.raises(IllegalTransition) as err:
                m.fire(event, session)
        assert (err.value.state, err.value.event) == (state, event)
        assert m.state is state and len(m.history) == before and m.illegal == 1
        assert f"event {event.value} cannot happen in state {state.value}" in caplog.text
    else:
        step = m.fire(event, session)
        assert m.state is want and M.TRANSITIONS[(state, event)] is want
        assert (step.source, step.event, step.target) == (state, event, want)
        assert step.changed is (want is not state)
        assert m.history[-1] == step and m.illegal == 0


def test_the_table_in_the_docs_is_the_table_in_the_code():
    assert M.table_markdown() in (ROOT / "docs" / "sync.md").read_text(encoding="utf-8")


def test_an_event_of_an_earlier_connection_is_stale_and_changes_nothing():
    m = reach(State.DRAINING)                    # session 1
    m.fire(E.LOST, 1)
    m.fire(E.ATTEMPT, 2)
    assert m.fire(E.CONNACK, 1) is None          # a late CONNACK of the first connection
    assert m.fire(E.HUB_LIVE, 1) is None
    assert m.state is State.CONNECTING and m.stale == 2 and m.session == 2
    m.fire(E.CONNACK, 2)
    assert m.linked(2) and not m.linked(1) and not m.draining(2)


def test_an_attempt_needs_its_session_number():
    with pytest.raises(ValueError, match="session"):
        Machine().fire(E.ATTEMPT)


# Sentence-keyed runs through the handshake of docs/sync.md: (events, final state, rows flow).
SCENARIOS = {
    "the hub's live answer to our birth opens the outbox":
        ([E.ATTEMPT, E.CONNACK, E.HUB_LIVE, E.BIRTH_SENT], State.DRAINING, True),
    "a retained online state alone gets only the birth out":
        ([E.ATTEMPT, E.CONNACK, E.HUB_ONLINE, E.BIRTH_SENT], State.AWAITING_ANSWER, False),
    "the live answer after the retained state opens the outbox":
        ([E.ATTEMPT, E.CONNACK, E.HUB_ONLINE, E.BIRTH_SENT, E.HUB_LIVE], State.DRAINING, True),
    "a live answer before our birth is out still waits for the birth":
        ([E.ATTEMPT, E.CONNACK, E.HUB_ONLINE, E.HUB_LIVE], State.ANSWERED, False),
    "the hub going offline holds the outbox":
        ([E.ATTEMPT, E.CONNACK, E.HUB_LIVE, E.BIRTH_SENT, E.HUB_OFFLINE],
         State.WAITING_FOR_HUB, False),
    "a birth finished after the hub left does not count when it returns":
        ([E.ATTEMPT, E.CONNACK, E.HUB_ONLINE, E.HUB_OFFLINE, E.BIRTH_SENT, E.HUB_LIVE],
         State.ANSWERED, False),
    "nothing flows before the hub's state, even after a birth":
        ([E.ATTEMPT, E.CONNACK, E.BIRTH_SENT], State.WAITING_FOR_HUB, False),
    "a lost link starts over from disconnected":
        ([E.ATTEMPT, E.CONNACK, E.HUB_LIVE, E.BIRTH_SENT, E.LOST], State.DISCONNECTED, False),
    "a refused connection goes back to disconnected":
        ([E.ATTEMPT, E.REFUSED], State.DISCONNECTED, False),
    "a CONNACK after we gave up on the attempt changes nothing":
        ([E.ATTEMPT, E.LOST, E.CONNACK], State.DISCONNECTED, False),
    "a stop while draining ends in stopped, whatever paho says meanwhile":
        ([E.ATTEMPT, E.CONNACK, E.HUB_LIVE, E.BIRTH_SENT, E.STOP, E.LOST, E.HUB_LIVE,
          E.BIRTH_SENT, E.STOP, E.CLOSED], State.STOPPED, False),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_handshake(name):
    events, final, flows = SCENARIOS[name]
    m = Machine()
    for event in events:
        m.fire(event, 1 if event is E.ATTEMPT else None)
    assert m.state is final and m.draining(1) is flows


class Flags:
    """client.py's flags before the machine, updated as its handlers updated them.

    One refinement the machine made is written in: a birth counts only while the hub is online.
    """

    def __init__(self) -> None:
        self.session: int | None = None
        self.stopped = False
        self.new_connection()

    def new_connection(self) -> None:
        self.connected = self.lost = self.hub_online = self.hub_live = self.birth = False

    def apply(self, event: Event, session: int | None) -> None:
        if event is E.ATTEMPT:
            self.session = session
            self.new_connection()
        elif event is E.CONNACK:
            # The coroutine took a CONNACK only while it was still waiting for one.
            if self.session is not None and not self.lost and not self.stopped:
                self.connected = True
        elif event in (E.REFUSED, E.LOST):
            self.lost = True
        elif event is E.HUB_ONLINE or event is E.HUB_LIVE:
            if event is E.HUB_LIVE and not self.hub_live:
                self.hub_live = True
            self.hub_online = True
        elif event is E.HUB_OFFLINE:
            if self.hub_online:
                self.hub_online = self.hub_live = self.birth = False
        elif event is E.BIRTH_SENT:
            if self.hub_online:
                self.birth = True
        elif event is E.STOP:
            self.stopped = True

    def linked(self) -> bool:
        return self.connected and not self.lost and not self.stopped

    def may_send(self) -> bool:
        return self.linked() and self.hub_online and self.hub_live and self.birth


# An event, and whether it carries the current session or an earlier one (stale).
steps = st.lists(st.tuples(st.sampled_from(list(Event)), st.booleans()), max_size=60)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_random_event_sequences_agree_with_the_flags_the_client_had(sequence):
    m, flags = Machine(), Flags()
    session = 0
    for event, stale in sequence:
        if event is E.ATTEMPT:
            session += 1
            sid: int | None = session
        else:
            sid = session - 1 if stale and session > 1 else (session or None)
        before, history = m.state, len(m.history)
        try:
            step = m.fire(event, sid)
        except IllegalTransition:
            assert (before, event) not in M.TRANSITIONS
            assert m.state is before and len(m.history) == history
            continue
        if step is None:  # stale: an earlier connection's event
            assert sid != m.session and m.state is before
            continue
        flags.apply(event, sid)
        current = m.session if m.session is not None else -1
        assert m.linked(current) is flags.linked(), (event, before, m.state)
        assert (m.linked(current) and m.hub_online()) is (flags.linked() and flags.hub_online)
        assert m.draining(current) is flags.may_send(), (event, before, m.state)
        assert (m.state is State.DRAINING) is m.draining(current)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_the_history_is_a_chain_and_stopped_is_final(sequence):
    m = Machine(history=1000)
    session = 0
    for event, _ in sequence:
        if event is E.ATTEMPT:
            session += 1
        was_stopped = m.state is State.STOPPED
        try:
            m.fire(event, session if event is E.ATTEMPT else None)
        except IllegalTransition:
            pass
        assert not was_stopped or m.state is State.STOPPED
    steps_ = list(m.history)
    for a, b in zip(steps_, steps_[1:]):
        assert a.target is b.source
    # From wherever it ended, a stop then a close always reaches stopped.
    if m.state is not State.STOPPED:
        m.fire(E.STOP)
        m.fire(E.CLOSED)
    assert m.state is State.STOPPED


def test_two_threads_firing_at_once_leave_a_consistent_history():
    # paho's thread and the loop fire at the same time; whatever the interleaving, every
    # accepted event is one step of one chain and every event is accounted for.
    m = Machine(history=100_000)
    m.fire(E.ATTEMPT, 1)
    m.fire(E.CONNACK, 1)
    rounds = 2000
    errors: list[BaseException] = []

    def run(events):
        try:
            for _ in range(rounds):
                for event in events:
                    try:
                        m.fire(event, 1)
                    except IllegalTransition:
                        pass
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    paho = threading.Thread(target=run, args=([E.HUB_ONLINE, E.HUB_LIVE, E.HUB_OFFLINE],))
    loop = threading.Thread(target=run, args=([E.BIRTH_SENT],))
    paho.start()
    loop.start()
    paho.join()
    loop.join()
    assert not errors
    history = list(m.history)
    assert len(history) == 2 + 4 * rounds and m.illegal == 0 and m.stale == 0
    for a, b in zip(history, history[1:]):
        assert a.target is b.source


def test_the_machine_and_its_tests_need_no_paho():
    script = ("import sys\nimport edge_agent.sync.machine\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paho'))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=agent_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
