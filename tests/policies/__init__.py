"""The pure rules of policies/."""
