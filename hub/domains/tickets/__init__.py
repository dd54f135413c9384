"""The tickets domain: one ticket per problem in the chain's ITSM, and the intents that say so.

    policy.py   the [tickets] config section (TicketPolicy), fingerprint(), correlation()
    schema.py   MIGRATIONS: ticket_problems, tickets, ticket_intents
    rules.py    on_alert(), tick(), record_delivered(), retry(), views (functions of tx, clock)
    outbox.py   claim(), release(): the intents leased to a delivery worker, in order per problem
    text.py     what a ticket says (device, provenance, likely cause and part, store hint)

No HTTP here: hub/connectors/ speak to the outside systems, hub/ticketing/ runs them.
"""

from hub.domains.tickets.policy import TicketPolicy, correlation, fingerprint, parse
from hub.domains.tickets.rules import AlertEvent, Outcome, on_alert, tick

__all__ = ["TicketPolicy", "AlertEvent", "Outcome", "on_alert", "tick", "fingerprint",
           "correlation", "parse"]
