"""Console: Discovery (Network Discovery Tasks, Assignment Rules, Network Assets)."""
