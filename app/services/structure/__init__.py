"""Account structure: organizations, departments, domains and their delegations."""
