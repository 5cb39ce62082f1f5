"""Database servers."""
