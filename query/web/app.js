// The auditlake page: everything it shows comes from the token-protected API (/v1/status and
// /v1/sql). Audit data is attacker-controlled text (user agents, app names, usernames), so it is
// only ever put into the page with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "auditlake-token";
const REFRESH_MS = 15000;

// The panels' SQL; dashboards/auditlake.json asks the same questions through Grafana.
const PANEL_SQL = {
  alerts: `SELECT alert_time, severity, rule_id, summary, entity
FROM alerts ORDER BY alert_time DESC LIMIT 20`,
  assumptions: `SELECT date_trunc('hour', event_time) AS time, caller_principal AS principal,
       count(*) AS assumptions
FROM assume_role_events GROUP BY 1, 2 ORDER BY 1, 2`,
  atypes: `SELECT atype, count(*) AS events
FROM mongodb_audit GROUP BY atype ORDER BY events DESC, atype`,
  failedLogins: `SELECT date_trunc('hour', ts) AS time, count(*) AS failures
FROM mongodb_audit WHERE atype = 'authenticate' AND result <> 0
GROUP BY 1 ORDER BY 1`,
  sessions: `SELECT started, "user", remote_ip, app_name, driver, "cluster", duration_seconds,
       commands, failed_auth_checks
FROM db_sessions ORDER BY started DESC LIMIT 50`,
};

const EXAMPLES = [
  ["Who assumed which role, from which IP addresses", `SELECT role_arn, caller_principal, source_ip, count(*) AS assumptions,
       min(event_time) AS first_seen, max(event_time) AS last_seen
FROM assume_role_events
GROUP BY role_arn, caller_principal, source_ip
ORDER BY assumptions DESC`],
  ["Who connected to the databases, with which app", `SELECT "cluster", "user", app_name, remote_ip, count(*) AS sessions,
       sum(duration_seconds) AS seconds
FROM db_sessions
GROUP BY 1, 2, 3, 4
ORDER BY sessions DESC`],
  ["Drops and user or role changes", `SELECT ts, "cluster", "user", atype, ns, result
FROM mongodb_audit
WHERE atype IN ('dropDatabase', 'dropCollection', 'createUser', 'dropUser', 'updateUser',
                'grantRolesToUser', 'revokeRolesFromUser', 'createRole', 'dropRole')
ORDER BY ts DESC`],
  ["One timeline across both sources", `SELECT time, source, actor, action, target, outcome, source_ip
FROM identity_activity
ORDER BY time DESC
LIMIT 100`],
  ["Rejected input, by reason", `SELECT reason, count(*) AS records FROM rejected GROUP BY reason ORDER BY records DESC`],
];

const errors = [];
window.addEventListener("error", (e) => recordError(e.message));
window.addEventListener("unhandledrejection", (e) => recordError(String(e.reason)));

function recordError(message) {
  errors.push(message);
  document.body.dataset.errors = String(errors.length);
  console.error(message);
}

class Unauthorized extends Error {}

class ApiError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    showTokenForm(token() ? "the token was refused" : "");
    throw new Unauthorized("unauthorized");
  }
  return response;
}

async function sql(text) {
  const response = await api("/v1/sql?format=json", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql: text }),
  });
  const body = await response.json();
  if (!response.ok) throw new ApiError(body.error || response.statusText, body.kind);
  return body;
}

// ---- token ----

function showTokenForm(message) {
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("token-error").textContent = message;
  document.getElementById("token").focus();
}

function setUpTokenForm() {
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
    document.getElementById("token-form").hidden = true;
    refresh();
  });
}

// ---- rendering ----

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function cellText(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "object") return JSON.stringify(value);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  return String(value);
}

// A table of `rows` (objects) with `columns` ({name}); missing keys are SQL NULLs.
function renderTable(container, columns, rows, decorate) {
  container.replaceChildren();
  if (rows.length === 0) {
    container.appendChild(element("p", "No rows.", "muted"));
    return;
  }
  const table = element("table", null, "grid");
  const head = table.createTHead().insertRow();
  for (const column of columns) head.appendChild(element("th", column.name));
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const column of columns) {
      const text = cellText(row[column.name]);
      const td = element("td", text === null ? "null" : text, text === null ? "null" : "");
      if (decorate) decorate(column.name, row[column.name], td);
      tr.appendChild(td);
    }
  }
  container.appendChild(table);
}

function formatNumber(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : String(n ?? "–");
}

function renderStatus(status) {
  const lake = status.lake || {};
  const process = status.process || {};
  const cards = [
    ["objects", "Objects ingested", lake.objects],
    ["objects_failed", "Objects failed", lake.objects_failed, lake.objects_failed > 0],
    ["cloudtrail_rows", "CloudTrail records", lake.cloudtrail_rows],
    ["mongodb_audit_rows", "Database audit events", lake.mongodb_audit_rows],
    ["rejected_rows", "Rejected records", lake.rejected_rows, lake.rejected_rows > 0],
    ["duplicate_events", "Duplicates dropped", lake.duplicate_events],
    ["alerts", "Alerts", lake.alerts, lake.alerts > 0],
    ["idle", "State", status.idle ? "idle" : "ingesting"],
  ];
  const box = document.getElementById("status");
  box.replaceChildren();
  for (const [field, label, value, bad] of cards) {
    const card = element("div", null, bad ? "card bad" : "card");
    card.dataset.field = field;
    card.appendChild(element("div", formatNumber(value), "value"));
    card.appendChild(element("div", label, "label"));
    box.appendChild(card);
  }
  const sources = (Array.isArray(status.sources) ? status.sources : [])
    .map((source) => (typeof source === "object" && source !== null ? source : { source }));
  const columns = sources.length ? Object.keys(sources[0]).map((name) => ({ name })) : [];
  renderTable(document.getElementById("sources"), columns, sources);
  const seen = process.newest_seen_micros;
  const ingested = process.newest_ingested_micros;
  const lag = seen > 0 && ingested > 0 ? Math.max(0, (seen - ingested) / 1e6) : null;
  document.getElementById("updated").textContent = "updated " +
    new Date().toLocaleTimeString() + (lag === null ? "" : ` · lag ${lag.toFixed(1)} s`);
}

// ---- charts ----

const PALETTE = ["#1f6feb", "#e36209", "#2da44e", "#a371f7", "#cf222e", "#0a7ea4", "#bf8700",
  "#6e7781"];
const charts = {};

function hourLabel(value) {
  return String(value).replace("T", " ").slice(0, 16);
}

function drawChart(id, config) {
  const canvas = document.getElementById(id);
  config.options = Object.assign({
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
  }, config.options || {});
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(canvas, config);
  canvas.dataset.points = String(config.data.datasets.reduce((n, d) => n + d.data.length, 0));
}

function chartAssumptions(result) {
  const hours = [...new Set(result.rows.map((r) => r.time))].sort();
  const totals = new Map();
  for (const r of result.rows) {
    totals.set(r.principal, (totals.get(r.principal) || 0) + r.assumptions);
  }
  // The busiest principals get their own series; the rest are summed so the legend stays legible.
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 7).map((e) => e[0]);
  const series = new Map(top.map((p) => [p, new Array(hours.length).fill(0)]));
  const other = new Array(hours.length).fill(0);
  for (const r of result.rows) {
    const target = series.get(r.principal) || other;
    target[hours.indexOf(r.time)] += r.assumptions;
  }
  const datasets = [...series.entries()].map(([principal, data], i) => ({
    label: shortPrincipal(principal), data, backgroundColor: PALETTE[i % PALETTE.length],
  }));
  if (other.some((v) => v > 0)) {
    datasets.push({ label: "others", data: other, backgroundColor: PALETTE[7] });
  }
  drawChart("chart-assumptions", {
    type: "bar",
    data: { labels: hours.map(hourLabel), datasets },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
}

function shortPrincipal(principal) {
  if (principal === undefined || principal === null) return "(unknown)";
  const text = String(principal);
  return text.length > 48 ? "…" + text.slice(-47) : text;
}

function chartAtypes(result) {
  drawChart("chart-atypes", {
    type: "bar",
    data: {
      labels: result.rows.map((r) => r.atype ?? "(none)"),
      datasets: [{ label: "events", data: result.rows.map((r) => r.events),
        backgroundColor: PALETTE[0] }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  });
}

function chartFailedLogins(result) {
  drawChart("chart-failed-logins", {
    type: "bar",
    data: {
      labels: result.rows.map((r) => hourLabel(r.time)),
      datasets: [{ label: "failed logins", data: result.rows.map((r) => r.failures),
        backgroundColor: PALETTE[4] }],
    },
    options: { scales: { y: { beginAtZero: true } }, plugins: { legend: { display: false } } },
  });
}

// ---- refresh ----

function decorateSeverity(column, value, td) {
  if (column === "severity" && value) td.classList.add("severity-" + value);
}

async function refresh() {
  try {
    const status = await (await api("/v1/status")).json();
    renderStatus(status);
    const [alerts, assumptions, atypes, failed, sessions] = await Promise.all([
      sql(PANEL_SQL.alerts), sql(PANEL_SQL.assumptions), sql(PANEL_SQL.atypes),
      sql(PANEL_SQL.failedLogins), sql(PANEL_SQL.sessions),
    ]);
    renderTable(document.getElementById("alerts"), alerts.columns, alerts.rows, decorateSeverity);
    chartAssumptions(assumptions);
    chartAtypes(atypes);
    chartFailedLogins(failed);
    renderTable(document.getElementById("sessions"), sessions.columns, sessions.rows);
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (!(e instanceof Unauthorized)) recordError("refresh: " + e.message);
  }
}

// ---- SQL console ----

let lastCsvUrl = null;

async function runConsole() {
  const text = document.getElementById("sql").value;
  const button = document.getElementById("run");
  const meta = document.getElementById("result-meta");
  const errorBox = document.getElementById("result-error");
  const result = document.getElementById("result");
  button.disabled = true;
  result.dataset.state = "running";
  errorBox.textContent = "";
  meta.textContent = "running…";
  const started = performance.now();
  try {
    const body = await sql(text);
    renderTable(result, body.columns, body.rows);
    const ms = Math.round(performance.now() - started);
    meta.textContent = `${body.row_count} row${body.row_count === 1 ? "" : "s"} in ${ms} ms`;
    offerCsv(body);
    result.dataset.state = "done";
  } catch (e) {
    result.replaceChildren();
    meta.textContent = "";
    errorBox.textContent = e instanceof ApiError ? `${e.kind}: ${e.message}` : e.message;
    result.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

function offerCsv(body) {
  const link = document.getElementById("download");
  if (lastCsvUrl) URL.revokeObjectURL(lastCsvUrl);
  const quote = (v) => {
    const text = cellText(v);
    if (text === null) return "";
    return /[",\n\r]/.test(text) ? '"' + text.replaceAll('"', '""') + '"' : text;
  };
  const names = body.columns.map((c) => c.name);
  const lines = [names.map(quote).join(",")];
  for (const row of body.rows) lines.push(names.map((n) => quote(row[n])).join(","));
  lastCsvUrl = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  link.href = lastCsvUrl;
  link.download = "auditlake.csv";
  link.hidden = false;
}

function setUpConsole() {
  const select = document.getElementById("examples");
  const textarea = document.getElementById("sql");
  select.appendChild(element("option", "Example questions…"));
  for (const [title] of EXAMPLES) select.appendChild(element("option", title));
  select.addEventListener("change", () => {
    const example = EXAMPLES[select.selectedIndex - 1];
    if (example) textarea.value = example[1];
  });
  textarea.value = EXAMPLES[0][1];
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      runConsole();
    }
  });
  document.getElementById("run").addEventListener("click", runConsole);
}

setUpTokenForm();
setUpConsole();
refresh();
setInterval(refresh, REFRESH_MS);
