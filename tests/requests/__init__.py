"""Requests and the whole path end to end."""
