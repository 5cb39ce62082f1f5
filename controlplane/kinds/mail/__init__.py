"""Official mail: the shared mail platform, institutions' domains, mailboxes and aliases."""
