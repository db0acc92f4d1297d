"""Planning: grid cells (specs) and the identities that decide what must be trained or evaluated."""
