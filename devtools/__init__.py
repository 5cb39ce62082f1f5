"""Run tooling for one machine: `make run`'s runner, the local services it starts, demo data.

The product (controlplane/, provisioners/, policies/) never imports this package; tests and
`make run` do.
"""
