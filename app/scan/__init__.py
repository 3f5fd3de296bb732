"""Certwright discovery (pure asyncio): targets, probe, sweep, health, rules, schedule."""
