"""Requests for hosting: submission, approval by the rules or operators, the approval queue."""
