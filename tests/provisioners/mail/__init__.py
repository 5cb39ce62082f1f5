"""The mail platform."""
