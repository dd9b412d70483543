"""The analysis of a sweep: verdict statistics, figures, the report, and tables rebuilt from W&B runs."""
