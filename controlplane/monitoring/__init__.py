"""Seeing the data centre: health probes, alerts, usage metering, capacity, charts, metrics."""
