"""OpenLDAP: the tree, institutions, people, groups, and services' accounts."""
