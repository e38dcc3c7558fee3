"""LEAF: data rows by scope (keyset-paged), the newest readings, and the token's grants."""
