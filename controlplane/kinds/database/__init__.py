"""PostgreSQL and MariaDB servers, one per service, with credentials and backups."""
