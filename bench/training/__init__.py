"""Training: the loop every architecture runs through, and its collaborators."""
