"""The stages of a sweep, one module each (plan, fetch, train, transfer, evaluate, report) over one sweep directory
(sweep_dir); `sweep` runs them in order."""
