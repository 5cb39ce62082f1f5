"""Provisioners against the real Docker Engine and slapd."""
