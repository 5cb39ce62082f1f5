"""Databases and applications bound to them, end to end."""
