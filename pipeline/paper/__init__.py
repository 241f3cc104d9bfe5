"""The paper: its claims (claims), how a claim is judged against a sweep (verdicts), the numbers of a sweep a claim
reads (quantities), what a sweep measured (results), and its figures recomputed from a sweep's models (figures)."""
