"""Everything that touches a sensor: pure wire-protocol decoders, thin transports, and sources.

A *source* (``firmware_bridge.source.Source``) is what the daemon consumes: an async
iterator of ``edge.stream.SampleBlock`` / ``FrameBlock``. ``firmware_bridge.devices.open_source``
turns a ``--source`` spec such as ``serial:cyton:/dev/ttyUSB0`` into one.
"""
