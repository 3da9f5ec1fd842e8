"""Training scripts for the models the project ships (not part of the installed package)."""
