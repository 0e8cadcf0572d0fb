"""Payments: the example project's one app."""
