"""Builtin tasks."""
