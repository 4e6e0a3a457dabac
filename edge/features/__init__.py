"""Signal preprocessing and features, shared by the daemon and the training tools (numpy only at import)."""
