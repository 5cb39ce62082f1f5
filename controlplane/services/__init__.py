"""Hosted services once approved: their state machine, actions, jobs, content, secrets."""
