"""`edge-hub approvals|tickets` and `edge-hub store` through a real API server (`edge-hub
api`, uvicorn on a free port) on SQLite and PostgreSQL: the token's user is the actor, the API
decides what its role and scope allow (a regional manager sees and approves only its region's
requests; 401/403/404/409 are one line and exit 1), `--json` prints the same through the API
as on `--db`, a mistake in the arguments is one line and exit 2, text from stores and the ITSM
is escaped.

The CLI runs in this process (apiproc.hub_here, the same main() as the `edge-hub` command);
one call goes through a real `python -m hub` process. One API server per database serves the
whole module, so each test works on its own tickets and requests."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

import edge_protocol as wire
from apikit import hub_with_fleet
from apiproc import ApiProcess, as_user, audit_trail, cli, hub_here, ok_json, refused
from edge_protocol.timestamps import format_ts
from hub.app import open_store
from hub.domains import approvals
from hub.domains.access import local_actor
from hub.domains.tickets import outbox, policy as pol, rules
from hub.domains.tickets.text import DeviceFacts
from hub.ingest.writer import apply as ingest_apply
from hub.ticketing import actions
from hubkit import envelope

POLICY = pol.TicketPolicy(routes=(pol.Route("sn"),),
                          connectors=(pol.ConnectorSpec("sn", "servicenow"),))
HOSTILE = "p1\x1b[2J"   # a device name a store sent, with a terminal escape in it


def _ticket(tx, store: str, region: str, device: str) -> tuple[int, int]:
    """A ticket whose first delivery failed for good, and the replacement it asks approval
    for (requested by the hub itself): (ticket id, approval id)."""
    out = rules.on_alert(tx, time.time, POLICY, rules.AlertEvent(
        store, region, device, "failed", "raised", "2026-12-05T07:00:00.000Z",
        "2026-12-05T07:00:00.000Z", 1, "critical", facts=DeviceFacts(kind="escpos")))
    (c,) = outbox.claim(tx, time.time, "w", 60, 1, ["sn"])
    outbox.release(tx, time.time, c.id, "w", "HTTP 400 \x1b]0;pwned\x07", None)
    (ask,) = out.approvals
    return out.ticket_id, actions.request_for_ticket(tx, time.time, ask)


def _scoring(store: str, region: str, seq: int, at: float, errors: dict, total: dict):
    e = envelope("event", {"event": "scoring_errors", "errors": errors, "total": total,
                           "model": "device_health-3872b4285766"},
                 store=store, region=region, seq=seq)
    e["ts"] = format_ts(datetime.fromtimestamp(at, timezone.utc))
    return wire.decode(wire.encode(e))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """The apikit fleet (s1, s2 north; s3 south; one user per role), a failed ticket with its
    approval request in s1 and in s3, more requests (one in s1 by a person, one chain-wide),
    s1's scoring errors, and `edge-hub api` over them."""
    from hubkit import create_pg_database, drop_pg_database, pg_reachable

    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        url = str(tmp / "hub.db")
    elif not pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (trust auth, user postgres)")
    else:
        url = create_pg_database()
    db, tokens = hub_with_fleet(url)
    now = time.time()
    with db.transaction() as tx:
        t1, a1 = _ticket(tx, "s1", "north", HOSTILE)
        t3, a3 = _ticket(tx, "s3", "south", "x1")
        asked = approvals.request(tx, time.time, local_actor("ann"), "ticket.dispatch",
                                  {"store": "s1", "device": "p2", "part": "cutter"},
                                  store="s1", region="north")
        chain = approvals.request(tx, time.time, local_actor("ann"), "models.freeze",
                                  {"why": "a chain-wide action"}, chain_wide=True)
        # s1's agent: a start event 3 h ago (42 counted since its state database was made),
        # then 13 devices left without a score an hour ago.
        events = [_scoring("s1", "north", 10, now - 3 * 3600, {}, {"non_finite": 30}),
                  _scoring("s1", "north", 11, now - 3600,
                           {"non_finite": 12, "worker_timeout": 1},
                           {"non_finite": 42, "worker_timeout": 1})]
        db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts, now, "{}")
                                    for e in events])
        ingest_apply(db, tx, events, now)
    db.close()
    api = ApiProcess(url, tmp / "api").start()
    try:
        yield SimpleNamespace(db=url, url=api.url, tokens=tokens, t1=t1, t3=t3, a1=a1, a3=a3,
                              asked=asked, chain=chain)
    finally:
        code = api.stop()
        if request.param == "postgresql":
            drop_pg_database(url)
    assert code == 0, api.log.read_text()


def on_db(served, *args: str, **env: str):
    return hub_here(*args, "--db", served.db, **env)


def ok(r) -> str:
    assert r.returncode == 0 and "Traceback" not in r.stderr, (r.returncode, r.stdout, r.stderr)
    return r.stdout


# approvals ----------------------------------------------------------------------------------

def test_a_regional_manager_sees_and_approves_only_its_region_s_requests(served):
    listed = ok_json(as_user(served, "north-rm", "approvals", "list", "--pending", "--json"))
    assert {r["id"] for r in listed} == {served.a1, served.asked}   # s1's, not s3's or chain
    assert {r["region"] for r in listed} == {"north"}
    theirs = ok_json(as_user(served, "s3-sm", "approvals", "list", "--json"))
    assert served.a3 in {r["id"] for r in theirs} and {r["store"] for r in theirs} == {"s3"}
    # The request as the API shows it is the request as the database shows it.
    shown = ok_json(as_user(served, "north-rm", "approvals", "show", str(served.a1), "--json"))
    assert shown == ok_json(on_db(served, "approvals", "show", str(served.a1), "--json"))
    assert shown["status"] == "pending" and shown["requester"] == "edge-hub"
    # Another region's request, a role that may not decide, a hash not the one shown.
    refused(as_user(served, "north-rm", "approvals", "approve", str(served.a3)), 1,
            "forbidden (403)")
    refused(as_user(served, "north-rm", "approvals", "show", str(served.a3)), 1,
            "forbidden (403)")
    refused(as_user(served, "ops", "approvals", "approve", str(served.a1)), 1,
            "may not approvals.decide")
    refused(as_user(served, "audit", "approvals", "deny", str(served.a1), "--reason", "no"), 1,
            "forbidden (403)")
    refused(as_user(served, "north-rm", "approvals", "approve", str(served.a1), "--hash",
                    "0" * 64), 1, "not the one you saw")
    done = ok_json(as_user(served, "north-rm", "approvals", "approve", str(served.a1),
                           "--hash", shown["payload_hash"], "--reason", "go", "--json"))
    assert done["status"] == "approved"
    assert [(v["approver"], v["role"], v["decision"], v["reason"]) for v in done["votes"]] == \
        [("north-rm", "regional-manager", "approve", "go")]
    (action, who, source), = [e for e in audit_trail(served.db, f"approval:{served.a1}")
                              if e[0] == "approval.approve"]
    assert who == "north-rm" and source.startswith("api:")
    # Decided: a second decision is 409, one line, exit 1; through a real process as well.
    refused(as_user(served, "north-rm", "approvals", "approve", str(served.a1)), 1,
            "approved, not pending")
    r = cli("approvals", "deny", str(served.a1), "--reason", "late", url=served.url,
            token=served.tokens["admin"])
    refused(r, 1, "hub answered 409")
    assert ok_json(as_user(served, "north-rm", "approvals", "list", "--pending",
                           "--json")) == [r for r in listed if r["id"] != served.a1]


def test_approvals_json_through_the_api_is_what_the_database_prints(served):
    for args in (("list",), ("list", "--pending"), ("list", "--limit", "2"),
                 ("show", str(served.chain))):
        through = ok_json(as_user(served, "admin", "approvals", *args, "--json"))
        assert through == ok_json(on_db(served, "approvals", *args, "--json")), args
    assert len(ok_json(as_user(served, "admin", "approvals", "list", "--limit", "2",
                               "--json"))) == 2
    # The table for people: one row a request, the action's hash shortened.
    text = ok(as_user(served, "admin", "approvals", "list"))
    head, *rows = text.splitlines()
    assert head.split()[:4] == ["ID", "ACTION", "SCOPE", "STATUS"]
    assert any(r.split()[:3] == [str(served.chain), "models.freeze", "chain"] for r in rows)
    shown = ok(as_user(served, "admin", "approvals", "show", str(served.chain)))
    assert shown.startswith(f"approval {served.chain}: models.freeze chain-wide, ")
    assert "needs 2 approver(s)" in shown and "why: a chain-wide action" in shown


def test_a_chain_wide_request_needs_two_people_through_the_api_or_on_the_hub_host(served):
    one = ok_json(as_user(served, "admin", "approvals", "approve", str(served.chain), "--json"))
    assert one["status"] == "pending" and [v["approver"] for v in one["votes"]] == ["admin"]
    refused(as_user(served, "north-rm", "approvals", "approve", str(served.chain)), 1,
            "forbidden (403)")   # a chain-wide action needs a chain-wide role
    two = ok_json(on_db(served, "approvals", "approve", str(served.chain), "--as", "ben",
                        "--json"))
    assert two["status"] == "approved"
    assert [v["approver"] for v in two["votes"]] == ["admin", "local:ben"]


def test_deny_through_the_api_and_the_requester_withdrawing_on_the_database(served):
    db = open_store(served.db)
    try:
        with db.transaction() as tx:   # asked on the hub host by carl
            mine = approvals.request(tx, time.time, local_actor("local:carl"),
                                     "ticket.dispatch", {"store": "s3", "device": "x1"},
                                     store="s3", region="south")
    finally:
        db.close()
    denied = ok_json(as_user(served, "s3-sm", "approvals", "deny", str(served.a3), "--reason",
                             "the part is on its way \x1b[31m", "--json"))
    assert denied["status"] == "denied" and denied["votes"][0]["approver"] == "s3-sm"
    text = ok(as_user(served, "s3-sm", "approvals", "show", str(served.a3)))
    assert "deny by s3-sm (store-manager): the part is on its way \\e[31m" in text
    assert "\x1b" not in text
    r = ok(on_db(served, "approvals", "deny", str(mine), "--reason", "asked by mistake",
                 "--as", "carl"))
    assert r.startswith(f"approval {mine}: ticket.dispatch s3, denied; asked by local:carl")


def test_approvals_mistakes_are_one_line_in_both_modes(served):
    for run in (lambda *a: as_user(served, "admin", *a), lambda *a: on_db(served, *a)):
        refused(run("approvals", "show", "abc"), 2, "numeric id")
        refused(run("approvals", "deny", str(served.a3)), 2, "deny needs --reason")
        refused(run("approvals", "approve", str(served.a3), "--hash", "xyz"), 2, "--hash")
        refused(run("approvals", "list", "--limit", "0"), 2, "--limit")
        refused(run("approvals", "show", "999999"), 1, "unknown approval request 999999")
    refused(as_user(served, "admin", "approvals", "approve", "1", "--as", "eve"), 2,
            "--as is for --db")
    refused(hub_here("approvals", "list", "--hub", served.url, "--db", served.db), 2,
            "not both")
    refused(hub_here("approvals", "list", url=served.url, token="eh_" + "x" * 43), 1,
            "not authorized (401)")


# tickets ------------------------------------------------------------------------------------

def test_tickets_through_the_api_are_scoped_escaped_and_the_same_as_on_the_database(served):
    everything = ok_json(as_user(served, "ops", "tickets", "list", "--json"))
    assert everything == ok_json(on_db(served, "tickets", "list", "--json"))
    assert {t["id"] for t in everything} == {served.t1, served.t3}
    for args in (("list", "--open"), ("list", "--store", "s3"), ("list", "--limit", "1"),
                 ("show", str(served.t1))):
        assert ok_json(as_user(served, "audit", "tickets", *args, "--json")) == \
            ok_json(on_db(served, "tickets", *args, "--json")), args
    north = ok_json(as_user(served, "north-rm", "tickets", "list", "--json"))
    assert [t["id"] for t in north] == [served.t1]
    assert ok_json(hub_here("--hub", served.url, "tickets", "list", "--json",   # --hub first
                            EDGE_HUB_TOKEN=served.tokens["north-rm"])) == north
    assert ok_json(as_user(served, "s3-sm", "tickets", "list", "--store", "s1", "--json")) == []
    refused(as_user(served, "s3-sm", "tickets", "show", str(served.t1)), 1, "forbidden (403)")
    # For people: a table and a page, the store's and the ITSM's text escaped.
    table = ok(as_user(served, "north-rm", "tickets", "list"))
    assert table.splitlines()[0].split()[:5] == ["ID", "STORE", "DEVICE", "PROBLEM", "STATE"]
    assert "p1\\e[2J" in table and "\x1b" not in table and "\x07" not in table
    page = ok(as_user(served, "north-rm", "tickets", "show", str(served.t1)))
    assert page.startswith(f"ticket {served.t1}: s1 p1\\e[2J ")
    assert "HTTP 400 \\e]0;pwned\\a" in page and "\x1b" not in page and "\x07" not in page
    assert f"edge-hub tickets retry {served.t1}" in page


def test_tickets_retry_needs_tickets_write_and_is_audited_as_the_user(served):
    for who in ("north-rm", "s3-sm", "audit"):
        refused(as_user(served, who, "tickets", "retry", str(served.t1)), 1,
                "may not tickets.write")
    assert ok_json(as_user(served, "ops", "tickets", "show", str(served.t1), "--json"))[
        "intents"][0]["status"] == "failed"
    line = ok(as_user(served, "ops", "tickets", "retry", str(served.t1)))
    assert line == f"ticket {served.t1}: 1 failed deliveries queued again\n"
    again = ok_json(as_user(served, "ops", "tickets", "retry", str(served.t1), "--json"))
    assert again == {"ticket": served.t1, "requeued": 0}
    assert ok_json(on_db(served, "tickets", "retry", str(served.t1), "--json")) == again
    trail = audit_trail(served.db, f"ticket:{served.t1}")
    retries = [(who, source.split(":")[0]) for action, who, source in trail
               if action == "ticket.retry"]
    assert retries[:2] == [("ops", "api"), ("ops", "api")] and retries[2][1] == "cli"
    assert ok_json(as_user(served, "ops", "tickets", "show", str(served.t1), "--json"))[
        "intents"][0]["status"] == "pending"
    # Filed under the ticket's store: a regional manager's audit view... is not its to read,
    # but `audit list --store s1` finds it.
    store_entries = ok_json(on_db(served, "audit", "list", "--store", "s1", "--json"))
    assert any(e["action"] == "ticket.retry" for e in store_entries)


def test_ticket_mistakes_are_one_line_in_both_modes(served):
    for run in (lambda *a: as_user(served, "ops", *a), lambda *a: on_db(served, *a)):
        refused(run("tickets", "show", "abc"), 2, "numeric id")
        refused(run("tickets", "show", "999999"), 1, "unknown ticket 999999")
        refused(run("tickets", "retry", "999999"), 1, "unknown ticket 999999")
        refused(run("tickets", "list", "--limit", "x"), 2, "--limit")
        refused(run("tickets", "list", "--store", "no such store"), 2, "--store")
    refused(as_user(served, "ops", "tickets", "retry", "1", "--as", "eve"), 2,
            "--as is for --db")


# the store view: scoring errors -------------------------------------------------------------

def test_the_store_view_shows_its_scoring_errors_in_both_modes(served):
    through = ok_json(as_user(served, "north-rm", "store", "s1", "--json"))
    local = ok_json(on_db(served, "store", "s1", "--json"))
    # The same but for since_age_s: how long ago it went online, as of each answer's clock.
    through.pop("since_age_s"), local.pop("since_age_s")
    assert through == local
    sc = through["scoring_errors"]
    assert (sc["total"], sc["by_reason"]) == (43, {"non_finite": 42, "worker_timeout": 1})
    assert (sc["last_24h"], sc["last_24h_by_reason"]) == \
        (13, {"non_finite": 12, "worker_timeout": 1})
    assert sc["model"] == "device_health-3872b4285766"
    line = ("scoring errors (devices left without a model score): 13 in the last 24 h "
            "(non_finite 12, worker_timeout 1), 43 since the agent's state database was made "
            "(non_finite 42, worker_timeout 1); model device_health-3872b4285766")
    assert line in ok(as_user(served, "north-rm", "store", "s1")).splitlines()
    assert line in ok(on_db(served, "store", "s1")).splitlines()
    # A store whose agent sent none: zeros in --json, no line in the text.
    quiet = ok_json(as_user(served, "s3-sm", "store", "s3", "--json"))
    assert quiet["scoring_errors"] == {"total": 0, "by_reason": {}, "last_24h": 0,
                                       "last_24h_by_reason": {}, "model": None,
                                       "reported": None}
    assert "scoring errors" not in ok(as_user(served, "s3-sm", "store", "s3"))
    refused(as_user(served, "s3-sm", "store", "s1"), 1, "forbidden (403)")


def test_the_scoring_errors_line_leaves_out_what_is_zero_and_escapes_the_reasons():
    from hub.cli.fleet import scoring_errors_text

    zero = {"total": 0, "by_reason": {}, "last_24h": 0, "last_24h_by_reason": {},
            "model": None, "reported": None}
    assert scoring_errors_text(zero) == "" and scoring_errors_text(None) == ""
    head = "scoring errors (devices left without a model score): "
    old = dict(zero, total=5, by_reason={"no_model": 5}, reported=1.0)
    assert scoring_errors_text(old) == \
        head + "none in the last 24 h, 5 since the agent's state database was made (no_model 5)"
    remade = dict(zero, last_24h=3, last_24h_by_reason={"bad\x1b[2Jreason": 2, "no_model": 1},
                  model="m\x07")   # its total started over: only the last 24 h
    assert scoring_errors_text(remade) == \
        head + "3 in the last 24 h (bad\\e[2Jreason 2, no_model 1); model m\\a"
