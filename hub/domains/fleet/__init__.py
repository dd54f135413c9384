"""Fleet state: stores (sessions, online, seq accounting), devices (latest reading and
decision), the messages seen once, and rejected messages counted by reason."""

from hub.domains.fleet.state import (AT_RISK, SESSION_KINDS, apply, devices, drop_stores,
                                     forget_session, mark_unseen, message_count,
                                     prune_messages, prune_scoring_errors, rejects,
                                     scoring_errors, store_detail, stores, unseen_stores)

__all__ = ["AT_RISK", "SESSION_KINDS", "apply", "devices", "drop_stores", "forget_session",
           "mark_unseen", "message_count", "prune_messages", "prune_scoring_errors", "rejects",
           "scoring_errors", "store_detail", "stores", "unseen_stores"]
