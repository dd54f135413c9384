"""Alerts: the instances raised and cleared at the stores (instances.py) and the regional feed
that republishes each transition once, holding back flapping alerts (feed.py)."""

from hub.domains.alerts.feed import (FEED_VERSION, FlapPolicy, Outgoing, Router, drop_stores,
                                     feed_key, prune, record)
from hub.domains.alerts.instances import ack, alert_id, alerts, apply, open_alerts

__all__ = ["FEED_VERSION", "FlapPolicy", "Outgoing", "Router", "drop_stores", "feed_key",
           "prune", "record", "ack",
           "alert_id", "alerts", "apply", "open_alerts"]
