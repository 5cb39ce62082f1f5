"""The directory tree, ACLs, service accounts."""
