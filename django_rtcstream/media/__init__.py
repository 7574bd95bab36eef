"""aiortc tracks and frame conversion: the only rooms that import aiortc and av."""
