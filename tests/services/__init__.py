"""Services: content archives."""
