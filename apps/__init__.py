"""Applications built on offload's public API (the reference conversion service)."""
