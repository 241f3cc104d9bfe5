"""Reports: sweep_report (a sweep's sections in order, written as report.md and report.html), document (one
Document, two renderings), plots, wandb_report (a W&B Report from the synced runs)."""
