"""Administrators: accounts and their scopes, passwords, sign-in sessions, first start."""
