"""Notifications: rules, the sweep of the inventory, events, composing deliveries into mail
and webhook messages, webhooks, acknowledgements and the Sent Notifications report.

Imported by the services that emit events (certificates, structure, accounts, discovery);
so it imports none of them (import-linter's acyclic contract)."""
