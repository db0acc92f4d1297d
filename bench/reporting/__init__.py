"""Reporting: tables, statistics, figures and the report, from stored records only (no torch import)."""
