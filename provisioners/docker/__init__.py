"""The Docker Engine side shared by every kind: hardened containers, quota volumes,
metering, the host firewall."""
