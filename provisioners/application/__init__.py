"""Institutions' application containers, their health check and image archives."""
