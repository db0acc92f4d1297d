"""Storage: run folders, kept models and evaluation records, written atomically, read without torch."""
