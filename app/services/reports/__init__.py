"""Dashboards and reports over the inventory (scoped like everything else)."""
