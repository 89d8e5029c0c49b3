"""hyper400k package."""
