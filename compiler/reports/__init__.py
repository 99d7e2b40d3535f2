"""Analysis reports of a compiled Spikformer: energy per inference by the paper's method,
per-layer activity and membrane use, quantization error, Loihi 2 resources, plots.

- :mod:`.flops`: synaptic layers and their MAC counts (from the graph itself)
- :mod:`.energy`: the paper's energy formula; ``EnergyMeter`` for callers such as the CLIs
- :mod:`.activity`: rates, float-vs-reference agreement, membrane use, attention maps
- :mod:`.build`: measure on samples and assemble the report dict
- :mod:`.markdown`, :mod:`.plots`: report.md and the PNGs
``spikeform-report`` (spikeform_cli/report.py) strings them together.
"""
