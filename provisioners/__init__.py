"""Convergent provisioners that turn plain specs into Docker and LDAP state (no Flask here)."""
