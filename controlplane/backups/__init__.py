"""Backups of services' data: scheduled, on demand, final on delete; restore; retention."""
