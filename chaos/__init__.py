"""Fault injection under load (``make chaos``); see ``chaos/harness.py``."""
