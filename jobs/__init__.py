"""Command-line entry points: `python -m jobs.<train|sweep|transfer|report|benchmark>`."""
