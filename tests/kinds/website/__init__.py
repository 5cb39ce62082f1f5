"""Websites and SFTP through the portal."""
