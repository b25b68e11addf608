// The review page of `triage audit-serve`. Plain DOM: every text from the server is set with
// textContent (never innerHTML), so a message is always shown as text.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { batch: null, item: null, labels: {}, intent: null, sentiment: null, why: "review", history: [], busy: false };

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/api/session") {
    show("signin");
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(detailText(data.detail) || response.statusText);
  return data;
}

// FastAPI's `detail`: a string, or (422) a list of {loc, msg}: "note: String should have at most
// 2000 characters"
function detailText(detail) {
  if (!Array.isArray(detail)) return detail ? String(detail) : "";
  return detail.map((d) => {
    const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
    return where ? `${where}: ${d.msg}` : String(d.msg);
  }).join("; ");
}

function show(section) {
  for (const id of ["signin", "batches", "review"]) $(id).hidden = id !== section;
  $("signout").hidden = section === "signin";
  if (section === "signin") $("name").focus();
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

const pct = (p) => (p === null || p === undefined ? "–" : `${(100 * p).toFixed(0)}%`);

// --- sign-in and batches ------------------------------------------------------------------

async function start() {
  try {
    const me = await api("GET", "/api/me");
    $("who").textContent = me.name + (me.adjudicator ? " (adjudicator)" : "");
    await listBatches();
  } catch (e) {
    show("signin");
  }
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    const me = await api("POST", "/api/session", { name: $("name").value, token: $("token").value });
    $("token").value = "";
    $("who").textContent = me.name + (me.adjudicator ? " (adjudicator)" : "");
    await listBatches();
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
});

$("signout").addEventListener("click", async () => {
  await api("DELETE", "/api/session").catch(() => {});
  $("who").textContent = "";
  show("signin");
});

async function listBatches() {
  const batches = await api("GET", "/api/batches");
  const list = $("batch-list");
  list.replaceChildren();
  for (const b of batches) {
    const li = el("li");
    const button = el("button", b.id);
    button.dataset.batch = b.id;
    button.addEventListener("click", () => openBatch(b.id));
    li.append(button, el("span", ` ${b.kind}, ${b.progress.done}/${b.progress.items} done, ${b.progress.mine} by you`));
    list.append(li);
  }
  if (!batches.length) list.append(el("li", "No batches yet: draw one with `triage audit-sample`."));
  show("batches");
}

$("to-batches").addEventListener("click", () => listBatches());

async function openBatch(id) {
  state.batch = id;
  state.history = [];
  $("batch-name").textContent = id;
  show("review");
  await loadNext();
}

// --- the review card ----------------------------------------------------------------------

function setProgress(p) {
  $("progress").max = Math.max(p.items, 1);
  $("progress").value = p.done;
  $("progress-text").textContent = `${p.done}/${p.items} done · ${p.mine} by you`;
}

async function loadNext() {
  const data = await api("GET", `/api/batches/${encodeURIComponent(state.batch)}/next`);
  render(data);
}

function render(data) {
  state.labels = data.labels;
  setProgress(data.progress);
  state.item = data.item;
  $("done").hidden = !!data.item;
  $("card").hidden = !data.item;
  $("status").textContent = "";
  if (!data.item) return;
  const item = data.item;
  state.why = data.why;
  const start = data.mine && data.mine.status !== "unclear" ? data.mine : item;
  state.intent = start.intent;
  state.sentiment = start.sentiment;
  $("note").value = data.mine && data.mine.note ? data.mine.note : "";

  const meta = [item.lang, item.channel, item.message_created_at, item.message_id].filter(Boolean);
  $("meta").textContent = meta.join(" · ");
  $("text").textContent = item.text;
  const model = [];
  if (item.intent) model.push(`intent ${item.intent} (${pct(item.intent_prob)})`);
  if (item.sentiment) model.push(`sentiment ${item.sentiment} (${pct(item.sentiment_prob)})`);
  if (item.decision) model.push(`${item.decision}: ${item.action || ""} ${item.priority || ""}`);
  $("model").replaceChildren(el("div", "Model: " + model.join(" · ")));
  if (item.reason) $("model").append(el("div", item.reason));
  if (item.top_intents && item.top_intents.length) {
    $("model").append(el("div", "Top intents: " + item.top_intents.map(([l, p]) => `${l} ${pct(p)}`).join(", ")));
  }
  const issue = item.extra && item.extra.suggested;
  $("issue").hidden = !issue;
  if (issue) {
    $("issue").textContent = "Training label under review; label-issue detection suggests: " +
      Object.entries(item.extra.suggested).map(([h, l]) => `${h} ${l}`).join(", ");
  }
  $("adjudication").hidden = data.why !== "adjudication";
  if (data.why === "adjudication") {
    $("adjudication").textContent = "Conflict to settle. " + data.others
      .map((o) => `${o.reviewer}: ${o.status === "unclear" ? "unclear" : `${o.intent} / ${o.sentiment}`}`)
      .join("; ");
  }
  $("previous").hidden = !data.mine;
  if (data.mine) $("previous").textContent = `You said: ${data.mine.status} ${data.mine.intent || ""} ${data.mine.sentiment || ""} (${data.mine.created_at}). Saving adds a new review; the old one stays in the history.`;

  const select = $("intent");
  select.replaceChildren();
  for (const label of state.labels.intent || []) {
    const option = el("option", label, label === item.intent ? "model" : "");
    option.value = label;
    select.append(option);
  }
  select.size = Math.min(Math.max((state.labels.intent || []).length, 2), 14);
  drawChoices();
}

function drawChoices() {
  const item = state.item;
  $("intent").value = state.intent || "";
  $("intent").classList.toggle("changed", state.intent !== item.intent);
  const box = $("sentiment");
  box.replaceChildren();
  (state.labels.sentiment || []).forEach((label, i) => {
    const button = el("button", `${i + 1} ${label}`, label === state.sentiment ? "chosen" : "");
    button.dataset.sentiment = label;
    button.addEventListener("click", () => { state.sentiment = label; drawChoices(); });
    box.append(button);
  });
  box.classList.toggle("changed", state.sentiment !== item.sentiment);
  $("save").lastChild.textContent = (state.intent === item.intent && state.sentiment === item.sentiment) ? " Accept" : " Save correction";
}

$("intent").addEventListener("change", () => { state.intent = $("intent").value; drawChoices(); });

async function submit(unclear) {
  if (!state.item || state.busy) return;  // one save at a time: a fast double key is one review
  state.busy = true;
  const item = state.item;
  const body = {
    intent: unclear ? null : state.intent,
    sentiment: unclear ? null : state.sentiment,
    unclear,
    note: $("note").value || null,
    adjudication: state.why === "adjudication",
  };
  try {
    const result = await api("POST", `/api/items/${item.id}/reviews`, body);
    state.history.push(item.id);
    $("status").textContent = `saved: ${result.review.status}`;
    await loadNext();
  } catch (e) {
    $("status").textContent = "not saved: " + e.message;
  } finally {
    state.busy = false;
  }
}

async function back() {
  const id = state.history.pop();
  if (id === undefined) { $("status").textContent = "nothing to go back to"; return; }
  render(await api("GET", `/api/items/${id}`));
}

function reset() {
  if (!state.item) return;
  state.intent = state.item.intent;
  state.sentiment = state.item.sentiment;
  drawChoices();
}

function toggleHelp() { $("help").hidden = !$("help").hidden; }

$("save").addEventListener("click", () => submit(false));
$("unclear").addEventListener("click", () => submit(true));
$("reset").addEventListener("click", reset);
$("back").addEventListener("click", back);
$("help-button").addEventListener("click", toggleHelp);

// --- keyboard -----------------------------------------------------------------------------

$("intent").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); state.intent = $("intent").value; drawChoices(); $("intent").blur(); }
  if (event.key === "Escape") { event.preventDefault(); drawChoices(); $("intent").blur(); }
  event.stopPropagation();
});
$("note").addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === "Escape") { event.preventDefault(); $("note").blur(); }
  event.stopPropagation();
});

document.addEventListener("keydown", (event) => {
  if ($("review").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
  const key = event.key;
  // Enter or space on a focused button clicks it already
  if (target && target.tagName === "BUTTON" && (key === "Enter" || key === " ")) return;
  if (key === "?") { event.preventDefault(); toggleHelp(); return; }
  if (!state.item) return;
  const sentiments = state.labels.sentiment || [];
  if (key === "a" || key === "Enter") { event.preventDefault(); submit(false); }
  else if (key === "x") { event.preventDefault(); submit(true); }
  else if (key === "i") { event.preventDefault(); $("intent").focus(); }
  else if (key === "c") { event.preventDefault(); $("note").focus(); }
  else if (key === "r") { event.preventDefault(); reset(); }
  else if (key === "b") { event.preventDefault(); back(); }
  else if (/^[1-9]$/.test(key) && Number(key) <= sentiments.length) {
    event.preventDefault();
    state.sentiment = sentiments[Number(key) - 1];
    drawChoices();
  }
});

start();
