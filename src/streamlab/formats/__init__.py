"""Readers and writers for the field's recording formats."""
