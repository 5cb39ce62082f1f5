"""COMGOV hosting control plane.

`controlplane.app.create_app` builds the portal; `controlplane.core` is what every process
shares; each other package is one domain (see docs/architecture.md for the map).
"""
