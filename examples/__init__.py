"""The commented example config.

Installed as the package ``edge.shipped_examples``; ``emotion-edge init`` writes a copy.
"""
