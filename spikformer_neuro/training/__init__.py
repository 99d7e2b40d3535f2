"""Training Spikformer models: the `spikeform-train` command and its pieces."""
