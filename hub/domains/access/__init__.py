"""Access: users, roles and what an actor may do (helper U fills this domain).

Contract (docs/architecture.md): `Actor` (kind, name, role, regions, stores) and
`authorize(actor, action, store=None, region=None)` raising hub.errors.Forbidden.
"""
