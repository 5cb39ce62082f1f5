"""People signing in: login and logout against the directory, roles, what each role may see."""
