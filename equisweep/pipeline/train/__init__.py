"""One run: the LightningModule, run settings, ``run_one``, callbacks and W&B run logging."""
