"""Docker's registry: configuration, signing material, tokens and the API client, against the
real registry."""
