"""OmniRouter benchmark (see README.md)."""
