"""The front proxy as the control plane sees it: its spec from settings, repair, visitor probes."""
