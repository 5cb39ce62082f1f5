"""Health, metering, metrics."""
