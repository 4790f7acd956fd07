"""spikeattn: attention spiking neural networks, reproduced end to end.

`import spikeattn` is cheap (the CLI's `--help` answers at once); `import spikeattn.models`
registers the backbones with timm (it imports torch and timm).
"""

__version__ = "0.1.0"
