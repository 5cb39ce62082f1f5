"""The local services devtools starts."""
