"""Auditors' monthly usage statements, built by a worker with progress."""
