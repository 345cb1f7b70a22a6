"""The truth: a case's exact gradients from the certified arbiter (``truth``)."""
