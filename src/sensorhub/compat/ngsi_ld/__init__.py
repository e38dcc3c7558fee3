"""ETSI NGSI-LD: entity queries (keyset-paged, ``Link: rel="next"``), retrieval and session writes."""
