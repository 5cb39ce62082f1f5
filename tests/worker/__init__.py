"""The scheduler and jobs."""
