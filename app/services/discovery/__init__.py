"""Network discovery: tasks, assignment rules, scan runs and shards, storing results,
the endpoints found (Network Assets)."""
