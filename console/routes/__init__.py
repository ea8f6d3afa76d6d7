"""The console's routes, one module per page (and its actions)."""
