"""Official mail through the portal."""
