"""Training Spikformer models: the training and evaluation loops (``engine``), the learning-rate
schedule (``schedule``) and multi-process training (``distributed``). The ``spikeform-train``
command that strings them together belongs to the command-line layer (spikeform_cli/train.py);
nothing here imports it."""
