"""The kernel every domain builds on: configuration, extensions, models, exceptions, error
pages and the clients of the real components. It imports no domain package."""
