"""Signing in, access scoping, people."""
