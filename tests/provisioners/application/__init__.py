"""Application containers and image archives."""
