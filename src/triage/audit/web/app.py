"""``triage audit-serve``: the review web app (FastAPI, one static page, no build step).

Reads and writes the audit database (``audit.db_url``); listens on ``audit.app.host``:``port``.

Reviewers sign in with their name and the token ``triage audit-reviewer`` printed for them
(stored as a scrypt hash); the app then keeps an HttpOnly, SameSite=Strict session cookie whose
SHA-256 is stored. The page (``static/``) fetches the next item of a batch, shows the message
(always as text: the script sets ``textContent``, and the Content-Security-Policy forbids inline
script) with the model's intent, sentiment, confidence and decision, and posts the reviewer's
verdict: accept, correct intent and/or sentiment, or unclear, with an optional note. Every
action has a keyboard shortcut. The item's stratum and weight are not shown: reviewers judge
every message alike.

JSON API (all but sign-in need the session cookie; bodies are JSON):

* ``POST /api/session`` ``{name, token}`` signs in (429 with ``Retry-After`` after too many
  failed tries per name or client address, see :mod:`~triage.audit.web.throttle`);
  ``DELETE /api/session`` signs out; ``GET /api/me``;
* ``GET /api/batches``: batches with progress;
* ``GET /api/batches/{batch}/next``: the next item for this reviewer (claimed for them), or
  ``item: null`` when they are done;
* ``GET /api/items/{id}``: an item with this reviewer's current review (to go back);
* ``POST /api/items/{id}/reviews`` ``{intent, sentiment, unclear, note, adjudication}``:
  appends a review; it needs an intent and/or a sentiment, or ``unclear``.

Both item routes answer 403 for an item not offered to this reviewer
(:meth:`~triage.audit.store.queue.QueueStore.may_review`): only their claims, the items they
reviewed, and for adjudicators the items in conflict.

A body the API refuses gets 422 with ``detail``: a list of ``{loc, msg, type}`` (the input is
not echoed). Text is stored as :func:`~triage.audit.store.connection.storable` makes it: NUL and
lone surrogates become U+FFFD.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, StringConstraints, model_validator

from triage.audit.store import ITEM_FIELDS, AuditDB, AuditError, Reviewer
from triage.audit.store.tables import NAME_MAX
from triage.audit.web.throttle import SignInThrottle
from triage.config import Config
from triage.text import storable

log = logging.getLogger(__name__)

COOKIE = "audit_session"
WEB = files("triage.audit.web") / "static"
SECURITY_HEADERS = {
    # no inline script, no third-party anything: a message that smuggles markup cannot run
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# what a reviewer sees of an item: its place in the batch and its fields, less the design (stratum,
# weight, control flag: reviewers judge every message alike) and the model's full probability
# tables (the page gets the top intents instead, see shown()) and its novelty (a far-out
# message's reason says so in words)
HIDDEN = frozenset(
    {
        "intent_probs",
        "novelty",
        "sentiment_threshold",
        "sentiment_probs",
        "stratum",
        "in_control",
        "inclusion_prob",
        "reviews_required",
    }
)
SHOWN = ("id", "batch_id", "position", *(f for f in ITEM_FIELDS if f not in HIDDEN))


NOTE_MAX = 2000  # characters of a review's note


class SignIn(BaseModel):
    # stripped before the length check, as triage audit-reviewer does: a name that got a token
    # can sign in
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)
    ]
    token: str = Field(min_length=1, max_length=200)


class ReviewIn(BaseModel):
    intent: str | None = Field(default=None, max_length=100)
    sentiment: str | None = Field(default=None, max_length=100)
    unclear: bool = False
    note: str | None = Field(default=None, max_length=NOTE_MAX)
    adjudication: bool = False

    @model_validator(mode="after")
    def _says_something(self) -> ReviewIn:
        if not self.unclear and self.intent is None and self.sentiment is None:
            raise ValueError('a review needs an intent and/or a sentiment, or "unclear": true')
        return self


def _top(probs: dict[str, float] | None, k: int = 3) -> list[list[Any]]:
    return [[label, p] for label, p in sorted((probs or {}).items(), key=lambda x: -x[1])[:k]]


def shown(item: dict[str, Any]) -> dict[str, Any]:
    """The item as the page gets it: the model's view plus its top intents."""
    out = {key: item.get(key) for key in SHOWN}
    out["top_intents"] = _top(item.get("intent_probs"))
    return out


def current_reviewer(request: Request) -> Reviewer:
    """The signed-in reviewer of a request (401 without a live session)."""
    found = request.app.state.db.session_reviewer(request.cookies.get(COOKIE))
    if found is None:
        raise HTTPException(401, "sign in first")
    # a JSON API behind a SameSite=Strict cookie: a cross-site form cannot send JSON
    if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
        raise HTTPException(415, "send JSON")
    return found


Me = Annotated[Reviewer, Depends(current_reviewer)]


#: an item id in a path: the ids are INTEGER columns (32 bits on PostgreSQL), so a larger number
#: names no item and is refused with 422 before it reaches the database
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def offered(db: AuditDB, who: Reviewer, item_id: int) -> None:
    """403 unless the item was offered to this reviewer (see ``AuditDB.may_review``)."""
    if not db.may_review(who, item_id):
        raise HTTPException(403, f"item {item_id} is not yours: fetch the next item of the batch")


def create_app(
    db: AuditDB,
    claim_minutes: float = 10.0,
    secure_cookie: bool = False,
    throttle: SignInThrottle | None = None,
) -> FastAPI:
    """The review app on an open :class:`AuditDB`.

    Args:
        db: the audit database.
        claim_minutes: how long an item fetched by a reviewer is kept from the others.
        secure_cookie: send the session cookie over HTTPS only (behind a TLS proxy).
        throttle: counts failed sign-ins (default: :class:`SignInThrottle` with its limits).
    """
    app = FastAPI(title="social-triage audit", docs_url=None, redoc_url=None)
    app.state.db = db
    throttle = throttle or SignInThrottle()

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # what was wrong and where, never the input: it may not even be encodable (a lone
        # surrogate) and a reply need not repeat a long body
        detail = [
            {
                "loc": storable(list(e.get("loc", ()))),
                "msg": storable(e.get("msg", "")),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(AuditError)
    async def audit_error(_request: Request, exc: AuditError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def labels_of(batch_id: str) -> dict[str, list[str]]:
        return db.batch(batch_id)["labels"]

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(WEB / "index.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        types = {"app.js": "text/javascript", "app.css": "text/css"}
        if name not in types:
            raise HTTPException(404, "not found")
        return FileResponse(str(WEB / name), media_type=f"{types[name]}; charset=utf-8")

    @app.post("/api/session")
    def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(body.name, address)
        if wait:
            raise HTTPException(
                429,
                f"too many failed sign-ins: try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )
        result = db.sign_in(body.name, body.token)
        if result is None:
            throttle.failed(body.name, address)
            raise HTTPException(401, "unknown reviewer or wrong token")
        throttle.succeeded(body.name)
        who, session = result
        response.set_cookie(
            COOKIE, session, httponly=True, samesite="strict", secure=secure_cookie, path="/"
        )
        return {"name": who.name, "adjudicator": who.adjudicator}

    @app.delete("/api/session")
    def sign_out(request: Request, response: Response) -> dict[str, str]:
        if request.cookies.get(COOKIE):
            db.sign_out(request.cookies[COOKIE])
        response.delete_cookie(COOKIE, path="/")
        return {"status": "signed out"}

    @app.get("/api/me")
    def me(who: Me) -> dict[str, Any]:
        return {"name": who.name, "adjudicator": who.adjudicator}

    @app.get("/api/batches")
    def list_batches(who: Me) -> list[dict[str, Any]]:
        out = []
        for batch_id in db.batch_ids():
            batch = db.batch(batch_id)
            out.append(
                {
                    "id": batch_id,
                    "kind": batch["kind"],
                    "created_at": batch["created_at"],
                    "since": batch["since"],
                    "until": batch["until"],
                    "progress": db.progress(batch_id, who),
                }
            )
        return out

    @app.get("/api/batches/{batch_id}/next")
    def next_item(batch_id: str, who: Me) -> dict[str, Any]:
        labels = labels_of(batch_id)
        found = db.next_item(batch_id, who, claim_minutes)
        progress = db.progress(batch_id, who)
        if found is None:
            return {"item": None, "progress": progress, "labels": labels}
        item, why = found
        others = []
        if why == "adjudication":
            others = [
                {"reviewer": c[0], "status": c[1], "intent": c[2], "sentiment": c[3]}
                for c in db.labels(batch_id)[item["id"]].current
            ]
        return {
            "item": shown(item),
            "why": why,
            "others": others,
            "mine": None,
            "progress": progress,
            "labels": labels,
        }

    @app.get("/api/items/{item_id}")
    def get_item(item_id: ItemId, who: Me) -> dict[str, Any]:
        offered(db, who, item_id)
        item = db.item(item_id)
        mine = db.my_latest(item_id, who)
        return {
            "item": shown(item),
            "why": "adjudication" if mine and mine["kind"] == "adjudication" else "review",
            "others": [],
            "mine": None
            if mine is None
            else {k: mine[k] for k in ("status", "intent", "sentiment", "note", "created_at")},
            "progress": db.progress(item["batch_id"], who),
            "labels": labels_of(item["batch_id"]),
        }

    @app.post("/api/items/{item_id}/reviews")
    def add_review(item_id: ItemId, body: ReviewIn, who: Me):
        offered(db, who, item_id)
        review = db.add_review(
            item_id,
            who,
            intent=body.intent,
            sentiment=body.sentiment,
            unclear=body.unclear,
            note=body.note,
            kind="adjudication" if body.adjudication else "review",
        )
        item = db.item(item_id)
        return {
            "review": {k: review[k] for k in ("id", "status", "intent", "sentiment", "note")},
            "progress": db.progress(item["batch_id"], who),
        }

    return app


def run(cfg: Config) -> None:
    """``triage audit-serve``: the review app in the foreground (uvicorn)."""
    import uvicorn

    acfg = cfg.audit
    db = AuditDB(acfg.db_url)
    app = create_app(db, float(acfg.app.claim_minutes), bool(acfg.app.secure_cookie))
    print(f"review app on http://{acfg.app.host}:{acfg.app.port}/ (database {acfg.db_url})")
    try:
        uvicorn.run(app, host=acfg.app.host, port=int(acfg.app.port), log_level="info")
    finally:
        db.close()
