"""Static websites: nginx behind the front proxy, content by archive or SFTP."""
