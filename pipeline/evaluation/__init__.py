"""One job's extra evaluation, beyond its own FGSM curve: the attacks' rows of evaluations.csv (`rows`), the checks
that say whether they worked (`diagnostics`), and the whole of it for one job, the body of one task (`job`)."""
