"""Datacake: a GraphQL API (``/graphql``) over the same services, tokens and grants (docs/graphql.md)."""
