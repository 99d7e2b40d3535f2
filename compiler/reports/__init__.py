"""Analysis reports of a compiled Spikformer: energy per inference by the paper's method,
per-layer activity and membrane use, quantization error, Loihi 2 resources, plots.

- :mod:`.flops`: synaptic layers and their MAC counts (from the graph itself)
- :mod:`.energy`: the paper's energy formula; ``EnergyMeter`` for callers such as the CLIs
- :mod:`.activity`: rates, float-vs-reference agreement, membrane use, attention maps
- :mod:`.measure`: float model vs integer reference on samples (predictions, per-layer spike
  agreement, rates; optionally membranes, energy and attention maps) - one implementation for
  the compile report and ``spikeform-report``
- :mod:`.compile_report`: the ``report.json`` of ``spikeform-compile`` (the Lava check arrives
  as plain numbers: the compiler never imports deploy)
- :mod:`.build`: assemble the ``spikeform-report`` dict from a measurement
- :mod:`.markdown`, :mod:`.plots`: report.md and the PNGs
``spikeform-report`` (spikeform_cli/report.py) strings them together.
"""
