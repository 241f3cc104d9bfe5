"""One training job, start to end: `job` (run_job: start an attempt, fit, evaluate and save), the Lightning module
that trains with a regularizer (`module`), and resuming an interrupted attempt (`resume`)."""
