"""Audit: an append-only log of every change of state and who made it (helper U).

Contract: `record(tx, clock, actor, action, obj, detail=None, source=None) -> int`, in the
same transaction as the change it records.
"""
