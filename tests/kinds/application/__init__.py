"""Application image uploads."""
