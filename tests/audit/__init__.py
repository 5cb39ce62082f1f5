"""The audit chain."""
