"""The paper: its claims (claims), how a claim is judged against a sweep (verdicts), what a sweep measured
(results), and its figures recomputed from a sweep's models (figures)."""
