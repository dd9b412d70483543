"""One run: the LightningModule, run settings, ``run_one``, callbacks, metric names and W&B run logging."""
