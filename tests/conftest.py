"""Shared fixtures live in helpers.py (imported by name), so that conftest modules never shadow each other."""
