"""Thin transports (serial, BLE, camera): read, feed a decoder, reconnect; nothing else."""
