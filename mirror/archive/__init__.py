"""Upstream archives: the Archive port, the NBIA v4 client and the simulated archive."""
