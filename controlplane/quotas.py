"""Quota figures for an institution (filled in by the policy evaluator when plans exist)."""
from __future__ import annotations

from .models import Institution


def summary(institution: Institution) -> list[dict]:
    """Rows for the usage page: resource, allocated, quota, used, percent, warning."""
    return []
