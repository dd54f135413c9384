"""The core loop: backoff, staleness, hung and raising collectors, factories that fail."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from edge_agent import blocking
from edge_agent.config import DeviceConfig
from edge_agent.scheduler import DeviceRunner, DeviceState, Scheduler, backoff_delay

from fakes import Counting, HungAsync, HungThread, Raising, Scripted, ThreadCounting
from wait import until

# Waits in these tests are upper bounds that only turn a bug into a failure instead of a hang.
PATIENCE_S = 30.0


def device(dev_id: str = "d1", **kw) -> DeviceConfig:
    kw.setdefault("jitter", 0.0)
    return DeviceConfig(id=dev_id, kind="host", **kw)


BACKOFF = {
    "a healthy device waits its interval": (dict(interval=10, backoff_max=300), 0, 10),
    "the first failure doubles the wait": (dict(interval=10, backoff_max=300), 1, 20),
    "the third failure waits eight intervals": (dict(interval=10, backoff_max=300), 3, 80),
    "the wait is capped at backoff_max": (dict(interval=10, backoff_max=300), 6, 300),
    "a thousand failures stay at the cap": (dict(interval=10, backoff_max=300), 1000, 300),
    "a backoff_max below the interval never shortens it": (dict(interval=60, backoff_max=5),
                                                           4, 60),
}


@pytest.mark.parametrize("settings,failures,expected", BACKOFF.values(), ids=BACKOFF.keys())
def test_backoff_delay_doubles_per_failure_up_to_the_cap(settings, failures, expected):
    assert backoff_delay(device(**settings), failures) == expected


def test_jitter_spreads_the_delay_but_never_past_the_cap():
    rand = random.Random(7)
    dev = device(interval=10, backoff_max=25, jitter=0.5)
    healthy = {backoff_delay(dev, 0, rand) for _ in range(200)}
    failing = [backoff_delay(dev, 5, rand) for _ in range(200)]
    assert min(healthy) >= 5 and max(healthy) <= 15 and len(healthy) > 100
    assert max(failing) <= 25 and min(failing) >= 12.5


def test_runner_doubles_its_wait_per_failure_and_resets_on_success():
    dev = device(interval=0.001, backoff_max=0.01)
    waits: list[float] = []  # the wait the runner chose after each poll
    runner = None

    class Recording(Scripted):
        async def poll(self):
            if runner.state.polls > 1:
                waits.append(runner.state.next_delay)
            return await super().poll()

    async def main():
        nonlocal runner
        runner = DeviceRunner(dev, sink=lambda r, s: None,
                              factory=lambda d: Recording(d, [False] * 6 + [True]))
        task = asyncio.create_task(runner.run())
        await until(lambda: len(waits) >= 8, what="eight polls")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert waits[:8] == [0.002, 0.004, 0.008, 0.01, 0.01, 0.01, 0.001, 0.001]


def test_consecutive_failures_count_up_and_reset_on_success_in_the_readings():
    dev = device(interval=0.001)
    readings = []

    async def main():
        runner = DeviceRunner(dev, sink=lambda r, s: readings.append(r),
                              factory=lambda d: Scripted(d, [False, False, True, False]))
        task = asyncio.create_task(runner.run())
        await until(lambda: len(readings) >= 4, what="four polls")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert [r.values["poll.errors"] for r in readings[:4]] == [1, 2, 0, 1]
    assert readings[0].reason == "no answer"


def test_a_hung_device_does_not_delay_the_polls_of_the_others():
    hung: list[HungAsync] = []
    fast: list[Counting] = []

    def factory(dev):
        c = HungAsync(dev) if dev.id == "hung" else Counting(dev)
        (hung if dev.id == "hung" else fast).append(c)
        return c

    async def main():
        sched = Scheduler(lambda r, s: None, factory)
        # The hung device's poll may take a minute; the fast one polls every 10 ms meanwhile.
        sched.apply((device("hung", interval=0.01, timeout=60.0),
                     device("fast", interval=0.01)))
        await until(lambda: hung and hung[0].started == 1, what="the hung poll starts")
        before = fast[0].polls
        await until(lambda: fast[0].polls >= before + 50, what="fifty polls of the fast device")
        # All the while, the hung device's first poll never returned.
        assert hung[0].started == 1 and hung[0].returned == 0
        await sched.stop()
        assert hung[0].returned == 1, "stopping cancels the hung poll"

    asyncio.run(main())


def test_a_device_hung_in_a_thread_holds_one_thread_and_the_others_keep_polling():
    release = threading.Event()
    made: dict[str, object] = {}
    readings = []

    def factory(dev):
        c = HungThread(dev, release) if dev.id == "hung" else ThreadCounting(dev)
        made[dev.id] = c
        return c

    async def main():
        sched = Scheduler(lambda r, s: readings.append(r), factory)
        sched.apply((device("hung", interval=0.01, timeout=0.05, backoff_max=0.02),
                     device("fast", interval=0.01)))
        await until(lambda: sched.runners["hung"][0].state.failures >= 10, what="ten failed polls")
        fast = made["fast"]
        before = fast.polls
        await until(lambda: fast.polls >= before + 50, what="fifty polls of the fast device")
        # Ten timed-out polls, yet the device's blocking call entered a thread only once.
        assert made["hung"].entered == 1
        assert blocking.hung("hung") == 1
        reasons = {r.reason for r in readings if r.device == "hung"}
        assert "a previous call to the device is still hung" in reasons
        release.set()
        await until(lambda: blocking.hung("hung") == 0, what="the stuck call to return")
        await sched.stop()

    try:
        asyncio.run(main())
    finally:
        release.set()


def test_a_collector_that_raises_gives_stale_unknown_readings_and_is_polled_again():
    readings = []

    async def main():
        sched = Scheduler(lambda r, s: readings.append(r), Raising)
        sched.apply((device("buggy", interval=0.001, backoff_max=0.002),))
        await until(lambda: len(readings) >= 3, what="three polls")
        await sched.stop()

    asyncio.run(main())
    assert all(r.stale for r in readings)
    assert readings[0].values["device.status"] == "unknown"
    assert "ZeroDivisionError" in readings[0].reason
    assert [r.values["poll.errors"] for r in readings[:3]] == [1, 2, 3]


def test_a_collector_that_cannot_be_built_is_retried_until_it_can():
    attempts = []
    readings = []

    def factory(dev):
        attempts.append(dev.id)
        if len(attempts) < 3:
            raise OSError("port not there yet")
        return Counting(dev)

    async def main():
        sched = Scheduler(lambda r, s: readings.append(r), factory)
        sched.apply((device("late", interval=0.001, backoff_max=0.002),))
        await until(lambda: any(not r.stale for r in readings), what="a fresh reading")
        await sched.stop()

    asyncio.run(main())
    assert readings[0].reason == "collector could not be created"
    assert len(attempts) == 3


def test_a_timed_out_poll_is_stale_offline_and_counted():
    readings = []

    async def main():
        sched = Scheduler(lambda r, s: readings.append(r), HungAsync)
        sched.apply((device("slow", interval=0.001, timeout=0.01, backoff_max=0.002),))
        await until(lambda: len(readings) >= 2, what="two polls")
        await sched.stop()

    asyncio.run(main())
    assert readings[0].stale and readings[0].values["device.status"] == "offline"
    assert readings[0].reason == "no answer within 0.01 s"
    assert [r.values["poll.timeouts"] for r in readings[:2]] == [1, 2]


STALENESS = {
    "a device never polled is stale": (dict(interval=10), None, 0.0, True),
    "a good reading within three intervals is current": (dict(interval=10), 100.0, 125.0, False),
    "a good reading older than three intervals is stale": (dict(interval=10), 100.0, 131.0, True),
    "max_age overrides three intervals": (dict(interval=10, max_age=5), 100.0, 106.0, True),
    "max_age can be longer than three intervals": (dict(interval=10, max_age=100), 100.0, 190.0,
                                                   False),
}


@pytest.mark.parametrize("settings,good_at,now,stale", STALENESS.values(), ids=STALENESS.keys())
def test_staleness_follows_max_age(settings, good_at, now, stale):
    state = DeviceState(device(**settings))
    state.last_good_at = good_at
    assert state.is_stale(now) is stale


def test_reload_apply_adds_removes_and_restarts_only_what_changed():
    made = []

    def factory(dev):
        c = Counting(dev)
        made.append(c)
        return c

    async def main():
        sched = Scheduler(lambda r, s: None, factory)
        first = sched.apply((device("a", interval=0.01), device("b", interval=0.01),
                             device("c", interval=0.01)))
        assert first == {"added": ["a", "b", "c"], "removed": [], "changed": []}
        task_a = sched.runners["a"][1]
        second = sched.apply((device("a", interval=0.01), device("b", interval=0.02),
                              device("d", interval=0.01), device("e", enabled=False)))
        assert second == {"added": ["d"], "removed": ["c"], "changed": ["b"]}
        assert sched.runners["a"][1] is task_a, "an unchanged device keeps its task"
        assert sched.runners["b"][0].device.interval == 0.02
        await until(lambda: all(c.polls for c in made if c.device.id in ("a", "d")),
                    what="the new device polls")
        await sched.stop()

    asyncio.run(main())


def test_stopping_the_scheduler_ends_every_task_even_of_devices_that_answer_at_once():
    # asyncio.wait_for on Python 3.11 lost a cancellation that arrived as an instant poll
    # finished, and the device went on polling after stop(); blocking.within() does not.
    async def main():
        sched = Scheduler(lambda r, s: None, Counting)
        sched.apply(tuple(device(f"d{i}", interval=0.0001) for i in range(20)))
        tasks = [task for _, task in sched.runners.values()]
        await asyncio.sleep(0.2)
        await sched.stop(grace=PATIENCE_S)
        return tasks

    tasks = asyncio.run(main())
    assert all(t.done() for t in tasks)
