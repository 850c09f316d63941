"""Protecting PHI at rest: the keyring, sealed values and blind indexes."""
