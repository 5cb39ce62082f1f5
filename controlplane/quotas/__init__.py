"""Quotas against the database: plans, allocations, decisions, increases, warnings."""
