"""Shipped models: <name>.tflite + <name>.json (manifest) + <name>.md (model card).

Installed as the package ``edge.shipped_models``; see ``edge.models.models_dir``.
"""
