"""The image registry: its access rules, the token endpoint, robot accounts, and the Docker
CLI against the real registry."""
