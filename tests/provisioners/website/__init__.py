"""Website and SFTP containers."""
