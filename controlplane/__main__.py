"""`python -m controlplane` is the `controlplane` command."""
from .cli import main

main()
