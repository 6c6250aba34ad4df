"""The visual report of a run (``d4m report``) and its export as a Hugging Face dataset (``d4m export``)."""
