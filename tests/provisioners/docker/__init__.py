"""Hardened containers, quota volumes, isolation."""
