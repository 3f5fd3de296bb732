"""Imports of certificates and the findings about every certificate in the inventory."""
