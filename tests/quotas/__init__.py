"""Quotas against the database."""
