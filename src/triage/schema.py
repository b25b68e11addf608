"""The contracts every layer shares: the record schema, the heads, the splits and the id of a
missing label."""

SCHEMA = ("id", "text", "lang", "intent", "sentiment", "source", "channel", "created_at")
HEADS = ("intent", "sentiment")
SPLITS = ("train", "val", "calib", "test")
MISSING_LABEL = -100  # label id of a missing label (PyTorch's cross-entropy ignore_index)
