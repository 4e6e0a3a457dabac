"""Pure wire-protocol decoders: bytes in, SampleBlocks out; no I/O, no clock reads."""
