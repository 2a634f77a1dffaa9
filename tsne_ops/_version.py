"""The package version: its one home (setup.py reads it from this file as text)."""
__version__ = "0.1.0"
