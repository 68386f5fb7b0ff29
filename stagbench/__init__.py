"""stagbench: repeated N-player Stag Hunt experiments between LLM agents.

The work lives in the top-level packages the design card names (``games``,
``topologies``, ``agents``, ``adversaries``, ``runs``, ``analysis``); this package
holds only what they all share: the version and the error hierarchy.
"""

__version__ = "0.1.0"
TRANSCRIPT_FORMAT = "stagbench.transcript"
TRANSCRIPT_VERSION = 1
