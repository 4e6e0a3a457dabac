"""Deployment files: the systemd unit and mosquitto configs.

Installed as the package ``edge.shipped_deploy``; ``emotion-edge init --system`` installs the unit.
"""
