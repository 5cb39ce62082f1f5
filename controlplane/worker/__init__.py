"""RQ plumbing: the queue, the one job runner, the worker's app, the periodic schedule."""
