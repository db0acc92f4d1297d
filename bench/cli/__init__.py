"""Command line: one module per command group; ``bench.cli.main`` holds the app and its entry point."""
