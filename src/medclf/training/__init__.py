"""Training: the LightningModule, callbacks and ``train(cfg) -> run directory``."""
