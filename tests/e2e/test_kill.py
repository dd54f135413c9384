"""A power cut at any instant: SIGKILL the real agent 50 times and check the outbox each time."""

from __future__ import annotations

import json
import os
import random
import time

from agentproc import AgentProcess, host_config, outbox_rows, read_only
from wait import wait_until

KILLS = 50


def test_sigkill_at_fifty_random_instants_keeps_every_committed_row_and_never_reuses_a_seq(
        tmp_path):
    seed = int(os.environ.get("KILL_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    # 20 devices every 50 ms, committed every 50 ms: the agent is nearly always mid-commit.
    # Five readings an envelope: each commit writes several rows.
    config.write_text(host_config(state, devices=20, interval=0.05, flush=0.05,
                                  extra="batch_max = 5\n", device_extra="jitter = 0.0"))
    db_path = state / "agent.db"
    known: dict[int, tuple[str, bytes]] = {}  # every row seen committed so far
    runs_that_committed = 0
    for run in range(KILLS):
        where = f"run {run} (KILL_TEST_SEED={seed})"
        agent = AgentProcess(config, tmp_path / f"agent-{run}.log")
        try:
            if run % 2:
                # Half the kills land while it polls and commits: after this run's own first
                # commit...
                previous_max = max(known, default=0)
                wait_until(lambda: max(outbox_rows(db_path), default=0) > previous_max,
                           what=f"{where}: a commit")
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                # ...half anywhere from start-up (imports, migration, first commit) on.
                time.sleep(rng.uniform(0.0, 0.5))
            # Rows read (read-only) while it runs were committed before the kill.
            seen_running = outbox_rows(db_path)
        finally:
            agent.kill()
        after = outbox_rows(db_path)
        if db_path.exists():
            db = read_only(db_path)
            try:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], where
            finally:
                db.close()
        for seq, row in {**known, **seen_running}.items():
            assert after.get(seq) == row, f"{where}: committed row seq {seq} lost or changed"
        previous_max = max(known, default=0)
        new = sorted(set(after) - set(known))
        assert all(seq > previous_max for seq in new), f"{where}: a seq was reused"
        for seq in new:
            envelope = json.loads(after[seq][1])
            assert envelope["seq"] == seq and envelope["id"] == after[seq][0], where
        ids = [env_id for env_id, _ in after.values()]
        assert len(ids) == len(set(ids)), f"{where}: an envelope id repeats"
        runs_that_committed += bool(new)
        known = after
    # The kills did land among commits, not only before the first one.
    assert runs_that_committed >= KILLS // 2, f"seed {seed}"
    db = read_only(db_path)
    try:
        last_seq = int(db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
    finally:
        db.close()
    assert last_seq == max(known), "meta.last_seq is committed with the rows"
    print(f"kill test: seed {seed}; {runs_that_committed} of {KILLS} runs committed rows; "
          f"{len(known)} rows, last seq {last_seq}")
