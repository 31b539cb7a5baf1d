// The investigator page: every action is one call to the JSON API, and every answer redraws the whole view.
"use strict";

let session = null;

const $ = (id) => document.getElementById(id);

async function call(method, url, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(detail || response.statusText);
  }
  return data;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

async function act(action) {
  showError(null);
  try {
    const view = await action();
    if (view) render(view);
  } catch (error) {
    showError(error);
  }
}

function imageUrl(key) {
  return "/api/images/" + key.split("/").map(encodeURIComponent).join("/");
}

function changeLabel(change) {
  if (change === null || change === 0) return "";
  return change > 0 ? `▲${change}` : `▼${-change}`;
}

function renderCandidates(view) {
  const box = $("candidates");
  box.replaceChildren();
  for (const c of view.candidates) {
    const card = document.createElement("figure");
    card.className = "candidate" + (c.key === view.accepted ? " accepted" : "");
    card.dataset.key = c.key;
    const img = document.createElement("img");
    img.src = imageUrl(c.key);
    img.alt = c.key;
    const caption = document.createElement("figcaption");
    const change = changeLabel(c.change);
    caption.innerHTML = `<b>#${c.rank}</b> ${c.score.toFixed(3)} <span class="change ${c.change > 0 ? "up" : "down"}">${change}</span>`;
    card.append(img, caption);
    if (!view.finished) {
      const reject = document.createElement("button");
      reject.textContent = "not them";
      reject.className = "reject";
      reject.onclick = () => act(() => call("POST", `/api/sessions/${session}/reject`, { key: c.key }));
      const accept = document.createElement("button");
      accept.textContent = "this is them";
      accept.className = "accept";
      accept.onclick = () => act(() => call("POST", `/api/sessions/${session}/accept`, { key: c.key }));
      card.append(reject, accept);
    }
    box.append(card);
  }
  $("removed").textContent = view.removed ? `(${view.removed} removed as not them or look-alikes)` : "";
}

function renderHistory(view) {
  $("witness-description").textContent = "Witness: " + view.description;
  const list = $("history");
  list.replaceChildren();
  for (const turn of view.history) {
    const item = document.createElement("li");
    const q = document.createElement("span");
    q.className = "q";
    q.textContent = turn.question;
    const a = document.createElement("span");
    a.className = "a";
    a.textContent = turn.answer;
    item.append(q, a);
    list.append(item);
  }
}

function renderPlot(scores) {
  const svg = $("plot");
  const width = 320, height = 140, pad = 28;
  svg.replaceChildren();
  if (!scores.length) return;
  const low = Math.min(...scores), high = Math.max(...scores);
  const span = high - low || 1;
  const x = (i) => pad + (scores.length === 1 ? 0 : (i * (width - 2 * pad)) / (scores.length - 1));
  const y = (s) => height - pad - ((s - low) / span) * (height - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", scores.map((s, i) => `${x(i)},${y(s)}`).join(" "));
  line.setAttribute("class", "score-line");
  svg.append(line);
  scores.forEach((s, i) => {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(i));
    dot.setAttribute("cy", y(s));
    dot.setAttribute("r", 3);
    const title = document.createElementNS(ns, "title");
    title.textContent = `round ${i}: ${s.toFixed(3)}`;
    dot.append(title);
    svg.append(dot);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x(i) - 4);
    label.setAttribute("y", height - 8);
    label.textContent = String(i);
    svg.append(label);
  });
  for (const [value, where] of [[high, y(high)], [low, y(low)]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0);
    label.setAttribute("y", where + 4);
    label.textContent = value.toFixed(2);
    svg.append(label);
  }
}

function render(view) {
  session = view.session;
  $("start-panel").hidden = true;
  $("session-panel").hidden = false;
  renderHistory(view);
  renderCandidates(view);
  renderPlot(view.top_scores);
  $("question-box").hidden = view.finished;
  $("question").textContent = view.question || "";
  $("answer-text").value = "";
  $("result").hidden = !view.finished;
  $("result").textContent = view.finished ? `Marked as the person: ${view.accepted}` : "";
  $("export-json").href = `/api/sessions/${session}/export`;
  $("export-png").href = `/api/sessions/${session}/contact-sheet.png`;
}

$("start-form").onsubmit = (event) => {
  event.preventDefault();
  act(() => call("POST", "/api/sessions", { description: $("description").value }));
};

$("resume-form").onsubmit = (event) => {
  event.preventDefault();
  const file = $("resume-file").files[0];
  if (!file) return showError("choose an exported session file first");
  const form = new FormData();
  form.append("file", new Blob([file], { type: "application/json" }), file.name);
  act(() => call("POST", "/api/sessions/resume", form));
};

for (const button of document.querySelectorAll(".answers button")) {
  button.onclick = () => act(() => call("POST", `/api/sessions/${session}/answer`, { kind: button.dataset.kind }));
}

$("answer-form").onsubmit = (event) => {
  event.preventDefault();
  act(() => call("POST", `/api/sessions/${session}/answer`, { kind: "text", text: $("answer-text").value }));
};

$("new-search").onclick = () => {
  session = null;
  $("session-panel").hidden = true;
  $("start-panel").hidden = false;
  $("description").value = "";
};

call("GET", "/api/info")
  .then((info) => {
    $("info").textContent = `${info.images} images · ${info.gallery} · questions: ${info.strategy}`;
  })
  .catch(showError);
