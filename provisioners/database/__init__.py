"""PostgreSQL and MariaDB servers: containers, engines' SQL, commands, backup and restore."""
