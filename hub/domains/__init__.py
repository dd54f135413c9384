"""The hub's domains: one folder each, owning its tables (schema.py: MIGRATIONS) and its rules.

Rules are plain functions of a transaction (`hub.store.Tx`) and a clock; no MQTT, HTTP or
threads here. A domain imports hub.store, hub.errors, edge_protocol and edge_common, and of the
other domains only hub.domains.audit and hub.domains.access; anything else crossing domains is
wired in hub.app. `ALL_MIGRATIONS` in hub.app lists every domain's migrations.
"""
