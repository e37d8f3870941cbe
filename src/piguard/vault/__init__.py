"""The vault: personal data encrypted under per-subject keys, blind indexes and identifier rules."""
