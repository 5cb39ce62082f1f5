"""Kinds of service, through the portal."""
