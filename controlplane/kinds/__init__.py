"""The catalogue of service kinds; one package per kind (form, provisioning, views, jobs)."""
