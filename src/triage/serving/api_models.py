"""The HTTP API's shapes: request bodies with their configured limits, responses and errors (the
OpenAPI schema is generated from these)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, StrictStr, create_model, field_validator

from triage.serving.record import Prediction
from triage.text import clean_text


class ErrorItem(BaseModel):
    loc: str = Field(description="Where in the body, e.g. messages[2].text")
    msg: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong and what to do, in one line")
    errors: list[ErrorItem] = Field(default_factory=list)


#: what the schema says of a prediction's fields (those without an entry speak for themselves)
PREDICTION_DESCRIPTIONS = {
    "message_id": "The caller's id, or a generated one (uuid4 hex)",
    "intent_threshold": "Threshold of the top intent; null: never",
    "decision": "auto: acted on without a person; review: a person decides",
    "action": "auto_reply, sales_queue, support_queue, care_queue, hide, "
    "moderation_review, review or none",
    "priority": "low, normal, high or urgent",
    "reason": "Why, in one sentence",
    "novelty": "Distance to the training data (0 to 2); at or above the model's threshold the "
    "message is far out and goes to review. null: the model has no novelty rule",
    "lang": "The language given or detected; und: undetermined",
}


def _field(name: str) -> Any:
    description = PREDICTION_DESCRIPTIONS.get(name)
    return ... if description is None else Field(description=description)


def _prediction_out() -> type[BaseModel]:
    """:class:`~triage.serving.record.Prediction`'s fields (all required) after the message id."""
    types = get_type_hints(Prediction)
    return create_model(
        "PredictionOut",
        __doc__="The runtime's prediction for one message, with the message id it was logged "
        "under.",
        __module__=__name__,
        message_id=(str, _field("message_id")),
        **{f.name: (types[f.name], _field(f.name)) for f in fields(Prediction)},
    )


PredictionOut = _prediction_out()


class ClassifyResponse(BaseModel):
    model_version: str
    predictions: list[PredictionOut]


class ModelInfo(BaseModel):
    """The bundle's manifest (without file hashes), its routing table and the input limits."""

    model_config = ConfigDict(extra="allow")
    model_version: str
    languages: list[str]
    heads: dict[str, Any]
    routing: dict[str, Any]
    limits: dict[str, int]
    rollout: RolloutOut
    challenger: dict[str, Any] = Field(
        description="the shadow / canary model: version, load error, canary share"
    )


class RolloutOut(BaseModel):
    """The rollout state in force (triage.serving.rollout)."""

    automation: bool = Field(description="false while the kill switch is on: everything to review")
    pilot: list[str] | None = Field(description="intents that may act automatically; null: all")
    note: str
    changed_at: str | None
    changed_by: str | None


class RolloutIn(BaseModel):
    """A change of the rollout state; fields left out keep their value (``pilot: null``: every
    intent the routing table allows)."""

    model_config = ConfigDict(extra="forbid")
    automation: bool | None = None
    pilot: list[StrictStr] | None = Field(default=None, max_length=200)
    note: str = Field(default="", max_length=500)


ModelInfo.model_rebuild()


class Status(BaseModel):
    status: str
    model_version: str | None = None


#: the longest ``id`` and ``channel`` a message may carry (characters)
MAX_ID_CHARS, MAX_CHANNEL_CHARS = 200, 64
#: bytes one character can take in a JSON body: an astral character (an emoji) sent
#: ``\u``-escaped (as Python's ``json.dumps`` does by default) is a surrogate pair, ``\uXXXX\uXXXX``
JSON_BYTES_PER_CHAR = 12


def request_models(max_batch: int, max_text_chars: int) -> type[BaseModel]:
    """The request body model with the configured limits (so that the schema shows them)."""

    class Message(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr = Field(
            min_length=1, max_length=max_text_chars, description="The message as sent"
        )
        id: StrictStr | None = Field(
            None,
            min_length=1,
            max_length=MAX_ID_CHARS,
            description="Your id for the message (logged)",
        )
        lang: StrictStr | None = Field(
            None,
            pattern=r"^[A-Za-z]{2,3}$",
            description="One of the model's languages (GET /v1/model), or und (undetermined: "
            "pooled thresholds); omitted or null: detected among the model's languages",
        )
        channel: StrictStr | None = Field(
            None,
            max_length=MAX_CHANNEL_CHARS,
            description="Where it came from (instagram, x, ...); logged",
        )

        @field_validator("text")
        @classmethod
        def not_blank(cls, text: str) -> str:
            if not clean_text(text):  # what the model would see: nothing
                raise ValueError("text is only whitespace or invisible characters")
            return text

    class ClassifyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        messages: list[Message] = Field(
            min_length=1,
            max_length=max_batch,
            description=f"1 to {max_batch} messages",
        )

    return ClassifyRequest


def max_body_bytes(max_batch: int, max_text_chars: int) -> int:
    """The largest body a request at the limits needs: every ``text``, ``id`` and ``channel`` at
    its longest and JSON-escaped at worst (:data:`JSON_BYTES_PER_CHAR`), plus room for the keys,
    the other fields and whitespace."""
    chars = max_text_chars + MAX_ID_CHARS + MAX_CHANNEL_CHARS
    return max_batch * (chars * JSON_BYTES_PER_CHAR + 1024) + 4096
