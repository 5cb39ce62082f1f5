"""Institutions' own applications from allowed images, and their image archives."""
