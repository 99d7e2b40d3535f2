"""The command-line layer: ``spikeform-train``, ``-compile``, ``-run`` and ``-report``.

The only layer that imports both the compiler and deploy; the four commands share their exit
codes (``exit_codes``) and their scaffolding (``common``).
"""
