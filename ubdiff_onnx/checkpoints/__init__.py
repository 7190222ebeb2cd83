"""Our checkpoint format, and importers for the original and refactor UB-Diff layouts."""
