"""Project lints run by ``make lint`` (small AST checks no general linter knows)."""
