"""The contracts every layer shares: the record schema, the heads, the splits and the id of a
missing label."""

#: ``pair_id``: the id shared by the translations of one message (parallel data such as MASSIVE,
#: or a team's translated messages); evaluate pairs the languages on it. None elsewhere.
SCHEMA = (
    "id",
    "text",
    "lang",
    "intent",
    "sentiment",
    "source",
    "channel",
    "created_at",
    "pair_id",
)
HEADS = ("intent", "sentiment")
SPLITS = ("train", "val", "calib", "test")
MISSING_LABEL = -100  # label id of a missing label (PyTorch's cross-entropy ignore_index)
