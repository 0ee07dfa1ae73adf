"""Experiments built on trained generators (e.g. ``classify``: downstream tumor classifier with synthetic slices)."""
