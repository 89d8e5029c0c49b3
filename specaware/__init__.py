"""specaware package."""
