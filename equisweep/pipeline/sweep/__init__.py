"""Many runs: sweep specs, the Ray Tune driver, Optuna per grid cell, and the result tables."""
