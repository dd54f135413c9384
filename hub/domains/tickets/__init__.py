"""Tickets: alerts turned into tickets in outside systems through connectors (helper K)."""
