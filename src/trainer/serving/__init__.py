"""Serving: `trainer serve` (the scoring server), the alias follower and `trainer check-serving`."""
