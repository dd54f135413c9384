"""Approvals: changes that need a second person before they take effect (helper K)."""
