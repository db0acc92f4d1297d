"""Settings: profiles, ``--set`` overrides and TOML override files resolved into one typed ``Config``."""
