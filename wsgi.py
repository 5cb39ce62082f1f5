"""WSGI entry point: ``gunicorn wsgi:app``."""
from controlplane.app import create_app

app = create_app()
