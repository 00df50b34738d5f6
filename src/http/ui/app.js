// The licd dashboard: polls this node's JSON API every second and draws the leader's view.
// No framework and nothing from another origin: the node serves this file, and its
// Content-Security-Policy allows nothing else. Data is put into the page as text only.
"use strict";

const POLL_MS = 1000;
const REQUEST_TIMEOUT_MS = 4000;
const STALE_MS = 3500;
const MAX_EVENTS = 50;
const TOKEN_KEY = "licd.token";
const EVENTS_KEY = "licd.events";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  status: null, // the last /admin/status answer
  licenses: null, // the last /v1/licenses answer
  ownNode: null, // the id of the node that serves this page
  ownNodeUp: null,
  fetchedAt: 0, // performance.now() when the last /v1/licenses request was sent
  lastSuccess: 0, // performance.now() of the last poll that got the status
  leaseFull: new Map(), // the longest lease each server was seen with, for its bar
  health: new Map(), // each member's last known health (a view without a leader has none)
  events: loadEvents(),
  timer: null,
  loop: 0, // the current polling loop; a stopped or restarted loop's answers are dropped
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// ---- formatting ----

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 60) return Math.floor(s) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.floor(h / 24) + " d";
}

function skew(ms) {
  if (ms === null || ms === undefined) return "–";
  const sign = ms > 0 ? "+" : ms < 0 ? "−" : "";
  return sign + duration(Math.abs(ms));
}

function date(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function clock(ms) {
  return new Date(ms).toTimeString().slice(0, 8);
}

// ---- the API ----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: "Bearer " + state.token },
      cache: "no-store",
      credentials: "omit",
      signal: abort.signal,
    });
  } catch (e) {
    throw new ApiError(0, "UNREACHABLE", "this node does not answer (" + e.message + ")");
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const code = body && body.code ? body.code : "HTTP_" + response.status;
    const message = body && body.message ? body.message : response.statusText;
    throw new ApiError(response.status, code, message);
  }
  return body;
}

async function ownNode() {
  try {
    const response = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
    return { up: response.ok, id: response.headers.get("x-licd-node-id") };
  } catch (e) {
    return { up: false, id: null };
  }
}

// ---- events the page observes ----

function loadEvents() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(EVENTS_KEY) || "[]");
    return Array.isArray(saved) ? saved.slice(0, MAX_EVENTS) : [];
  } catch (e) {
    return [];
  }
}

function event(kind, text) {
  state.events.unshift({ at: Date.now(), kind, text });
  state.events.length = Math.min(state.events.length, MAX_EVENTS);
  sessionStorage.setItem(EVENTS_KEY, JSON.stringify(state.events));
}

function servers(licenses) {
  const all = new Map();
  for (const usage of licenses ? licenses.licenses : []) {
    for (const n of usage.nodes) all.set(n.node, { license: usage.license.id, ...n });
  }
  return all;
}

function observeStatus(before, after) {
  for (const m of after.members) {
    if (m.healthy !== true && m.healthy !== false) continue;
    const was = state.health.get(m.id);
    if (was === true && m.healthy === false) {
      event("bad", "Node " + m.id + " stopped answering the leader");
    } else if (was === false && m.healthy === true) {
      event("good", "Node " + m.id + " answers the leader again");
    }
    state.health.set(m.id, m.healthy);
  }
  if (!before) return;
  if (before.leader_id !== after.leader_id || before.term !== after.term) {
    if (after.leader_id === null || after.leader_id === undefined) {
      event("bad", "No leader is known (term " + after.term + ")");
    } else if (before.leader_id !== after.leader_id) {
      event("info", "Node " + after.leader_id + " leads (term " + after.term + ")");
    }
  }
  const old = new Map(before.members.map((m) => [m.id, m]));
  for (const m of after.members) {
    const was = old.get(m.id);
    if (!was) {
      event("info", "Node " + m.id + " joined as a " + m.role + " (" + m.addr + ")");
    } else if (was.role !== m.role) {
      event("info", "Node " + m.id + " is now a " + m.role);
    }
    old.delete(m.id);
  }
  for (const id of old.keys()) {
    event("info", "Node " + id + " left the cluster");
    state.health.delete(id);
  }
  const warned = new Set(before.warnings);
  for (const w of after.warnings) if (!warned.has(w)) event("bad", "Warning: " + w);
  // A warning replaced by another of its kind ("redundancy lost: 1 of 3 ..." after "2 of
  // 3") is not cleared.
  const kind = (w) => w.split(":")[0];
  const now = new Set(after.warnings);
  const kinds = new Set(after.warnings.map(kind));
  for (const w of before.warnings) {
    if (!now.has(w) && !kinds.has(kind(w))) event("good", "Cleared: " + w);
  }
}

function observeLicenses(before, after) {
  if (!before) return;
  const old = new Map(before.licenses.map((u) => [u.license.id, u]));
  for (const u of after.licenses) {
    const was = old.get(u.license.id);
    const id = u.license.id;
    if (!was) event("info", "License " + id + " installed (" + u.licensed_cores + " cores)");
    else if (was.license.serial !== u.license.serial)
      event("info", "License " + id + " reissued (serial " + u.license.serial + ")");
    else if (!was.expired && u.expired) event("bad", "License " + id + " expired");
    old.delete(id);
  }
  for (const id of old.keys()) event("info", "License " + id + " removed");
  const had = servers(before);
  for (const [name, s] of servers(after)) {
    const was = had.get(name);
    if (!was) {
      event("info", name + " allocated " + s.counted_cores + " cores of " + s.license);
    } else if (was.counted_cores !== s.counted_cores || was.license !== s.license) {
      event("info", name + " now counts " + s.counted_cores + " cores of " + s.license);
    }
    had.delete(name);
  }
  for (const [name, s] of had) {
    event("info", name + " no longer holds cores of " + s.license + " (released or lease over)");
  }
}

// ---- drawing ----

function setBanner(level, title, detail, warnings) {
  const banner = $("banner");
  if (!level) {
    banner.hidden = true;
    banner.removeAttribute("data-level");
    return;
  }
  banner.hidden = false;
  banner.setAttribute("data-level", level);
  $("banner-title").textContent = title;
  $("banner-detail").textContent = detail;
  $("banner-warnings").replaceChildren(...warnings.map((w) => el("li", {}, w)));
}

function drawBanner() {
  const s = state.status;
  if (state.ownNodeUp === false) {
    setBanner("bad", "This node does not answer", "The figures below are the last it gave.", []);
    return;
  }
  if (!s) return;
  if (s.state !== "Leader" && s.leader_id !== null && s.leader_id !== undefined) {
    setBanner(
      "bad",
      "The leader does not answer",
      "Node " + s.node_id + " knows node " + s.leader_id + " as the leader but cannot reach " +
        "it; if it is down, the others elect a new leader within seconds.",
      s.warnings,
    );
    return;
  }
  if (s.state !== "Leader") {
    setBanner(
      "bad",
      "No leader: licensing is unavailable",
      "Fewer than a majority of the license servers can reach each other.",
      s.warnings,
    );
    return;
  }
  const voters = s.members.filter((m) => m.role === "voter");
  const up = voters.filter((m) => m.healthy === true);
  const down = voters.filter((m) => m.healthy !== true);
  if (down.length > 0) {
    const quorum = Math.floor(voters.length / 2) + 1;
    const title =
      up.length === 1
        ? "Only one license server is running"
        : "Only " + up.length + " of " + voters.length + " license servers are running";
    const atRisk = up.length <= quorum;
    let risk;
    if (up.length < quorum)
      risk = "Licensing has stopped: " + quorum + " of " + voters.length + " must be up. ";
    else if (atRisk) risk = "Redundancy lost: one more failure stops licensing. ";
    else risk = "Licensing survives " + (up.length - quorum) + " more failure(s). ";
    const detail =
      risk +
      "Down: " +
      down.map((m) => "node " + m.id + " (" + m.addr + ")").join(", ") +
      ".";
    setBanner(atRisk ? "bad" : "warn", title, detail, s.warnings);
    return;
  }
  if (s.warnings.length > 0) {
    setBanner("warn", "Warnings", "", s.warnings);
    return;
  }
  setBanner(null);
}

function drawSubtitle() {
  const parts = [];
  if (state.ownNode) parts.push("served by node " + state.ownNode);
  const s = state.status;
  if (s && s.state === "Leader") parts.push("leader: node " + s.leader_id + ", term " + s.term);
  else if (s) parts.push("no leader known (node " + s.node_id + "'s own view)");
  if (state.lastSuccess) {
    const age = performance.now() - state.lastSuccess;
    parts.push(age > STALE_MS ? "not updated for " + duration(age) : "live");
  }
  $("subtitle").textContent = parts.join(" · ");
}

function drawMembers() {
  const s = state.status;
  const rows = s.members.map((m) => {
    const leads = s.state === "Leader" && m.id === s.leader_id;
    const health =
      m.healthy === true ? "healthy" : m.healthy === false ? "down" : "unknown";
    return el(
      "tr",
      { "data-member": m.id, "data-health": health },
      el("td", {}, "node " + m.id),
      el("td", { class: "mono" }, m.addr),
      el("td", {}, leads ? "leader" : m.role),
      el("td", {}, el("span", { class: "pill " + health }, health)),
      el("td", {}, duration(m.last_contact_ms)),
      el("td", {}, m.lag === null || m.lag === undefined ? "–" : m.lag),
      el("td", {}, skew(m.clock_skew_ms)),
    );
  });
  $("members").tBodies[0].replaceChildren(...rows);
}

function drawLicenses() {
  const l = state.licenses;
  if (!l) return;
  $("no-licenses").hidden = l.licenses.length > 0;
  const cards = l.licenses.map((u) => {
    const used = u.licensed_cores > 0 ? u.allocated_cores / u.licensed_cores : 1;
    const pct = Math.min(100, Math.round(used * 100));
    const level = u.expired || used >= 1 ? "bad" : used >= 0.9 ? "warn" : "good";
    let expiry;
    if (u.expired) expiry = "expired " + date(u.license.expires_at);
    else if (u.license.expires_at === null || u.license.expires_at === undefined)
      expiry = "never expires";
    else
      expiry =
        "expires " +
        date(u.license.expires_at) +
        " (in " +
        duration(u.license.expires_at - l.cluster_time) +
        ")";
    const bar = el("div", { class: "bar" }, el("div", { class: "fill " + level }));
    bar.firstChild.style.width = pct + "%";
    return el(
      "article",
      { class: "license", "data-license": u.license.id },
      el(
        "h3",
        {},
        u.license.id,
        el("span", { class: "muted" }, " " + u.license.customer + " · serial " + u.license.serial),
      ),
      bar,
      el(
        "p",
        { class: "usage" },
        u.allocated_cores + " of " + u.licensed_cores + " cores in use (" + pct + " %), " +
          u.free_cores + " free, " + u.nodes.length + " server(s)",
      ),
      el("p", { class: u.expired ? "expiry bad" : "expiry" }, expiry),
    );
  });
  $("licenses").replaceChildren(...cards);
}

function drawServers() {
  const all = [...servers(state.licenses).values()].sort((a, b) =>
    a.node < b.node ? -1 : a.node > b.node ? 1 : 0,
  );
  $("no-servers").hidden = all.length > 0;
  const rows = all.map((s) => {
    const full = Math.max(state.leaseFull.get(s.node) || 0, s.lease_remaining_ms);
    state.leaseFull.set(s.node, full);
    const cores =
      s.counted_cores === s.cores ? String(s.cores) : s.cores + " (counts " + s.counted_cores + ")";
    return el(
      "tr",
      { "data-server": s.node },
      el("td", {}, s.node),
      el("td", {}, s.license),
      el("td", { class: "mono" }, s.mac),
      el("td", { class: "cores" }, cores),
      el(
        "td",
        { class: "lease" },
        el("div", { class: "bar small" }, el("div", { class: "fill good" })),
        el("span", { class: "countdown", "data-remaining": s.lease_remaining_ms }),
      ),
    );
  });
  $("servers").tBodies[0].replaceChildren(...rows);
  tick();
}

// The lease countdowns, between polls: the leader's remaining time less what elapsed here
// since the request was sent (the page's own monotonic clock).
function tick() {
  const elapsed = performance.now() - state.fetchedAt;
  for (const c of document.querySelectorAll("#servers .countdown")) {
    const left = Math.max(0, Number(c.getAttribute("data-remaining")) - elapsed);
    const name = c.closest("tr").getAttribute("data-server");
    const full = state.leaseFull.get(name) || 1;
    c.textContent = left > 0 ? duration(left) + " left" : "over";
    const fill = c.previousSibling.firstChild;
    fill.style.width = Math.round((100 * left) / full) + "%";
    fill.className = "fill " + (left / full < 0.25 ? "bad" : left / full < 0.5 ? "warn" : "good");
  }
  drawSubtitle();
}

function drawEvents() {
  const items = state.events.map((e) =>
    el(
      "li",
      { class: "event " + e.kind },
      el("time", {}, clock(e.at)),
      " ",
      e.text,
    ),
  );
  if (items.length === 0) items.push(el("li", { class: "empty" }, "Nothing has changed yet."));
  $("events").replaceChildren(...items);
}

function showError(text) {
  const p = $("error");
  p.hidden = !text;
  p.textContent = text || "";
}

// ---- the loop ----

function showLogin(message) {
  clearTimeout(state.timer);
  state.timer = null;
  state.loop += 1;
  $("login").hidden = false;
  $("dashboard").hidden = true;
  $("forget").hidden = true;
  $("login-error").textContent = message || "";
  document.body.dataset.state = "login";
  $("token").focus();
}

function start() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("forget").hidden = false;
  document.body.dataset.state = "loading";
  clearTimeout(state.timer);
  state.loop += 1;
  poll(state.loop);
}

async function poll(loop) {
  const sent = performance.now();
  const [status, licenses, own] = await Promise.allSettled([
    api("/admin/status"),
    api("/v1/licenses"),
    ownNode(),
  ]);
  if (loop !== state.loop) return;
  const refused = [status, licenses].find(
    (r) => r.status === "rejected" && (r.reason.status === 401 || r.reason.status === 403),
  );
  if (refused) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    showLogin(refused.reason.code + ": " + refused.reason.message);
    return;
  }
  const o = own.value;
  if (state.ownNodeUp !== null && state.ownNodeUp !== o.up) {
    event(o.up ? "good" : "bad", o.up ? "This node answers again" : "This node does not answer");
  }
  state.ownNodeUp = o.up;
  if (o.id) state.ownNode = o.id;
  const errors = [];
  if (status.status === "fulfilled") {
    observeStatus(state.status, status.value);
    state.status = status.value;
    state.lastSuccess = performance.now();
    drawMembers();
  } else {
    errors.push("status: " + status.reason.code + ": " + status.reason.message);
  }
  if (licenses.status === "fulfilled") {
    observeLicenses(state.licenses, licenses.value);
    state.licenses = licenses.value;
    state.fetchedAt = sent;
    drawLicenses();
    drawServers();
  } else {
    errors.push("licenses: " + licenses.reason.code + ": " + licenses.reason.message);
  }
  showError(errors.join(" · "));
  drawBanner();
  drawEvents();
  drawSubtitle();
  if (state.status) {
    document.body.dataset.state = $("banner").hidden ? "ok" : "alert";
  }
  const wait = Math.max(0, POLL_MS - (performance.now() - sent));
  state.timer = setTimeout(() => poll(loop), wait);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("login-error").textContent = "Paste a token first.";
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    start();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    showLogin("Token forgotten.");
  });
  setInterval(tick, 200);
  if (state.token) start();
  else showLogin("");
});
