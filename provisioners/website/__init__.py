"""A website's nginx container and its SFTP side-car."""
