"""Integrations with other tools: Ray Tune hyperparameter search, experiment trackers."""
