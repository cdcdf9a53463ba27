// The viewer's pages. Every piece of trace data reaches the page through textContent or an SVG text node's
// textContent, never innerHTML, so a model's output can only ever be shown, not run.
const page = document.getElementById("page");
const ROW = 22;
const VERIFICATION_POLL_MS = 250;
const EVENTS_PAGE = 500;  // events per request of the timeline (agentflow/viewer/_export.py writes pages of as many)

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

// An exported site (agentflow view --export) opens from file://, where fetch() is blocked: its data are scripts
// that each register one response under the path the server would have answered.
const EXPORTED = Boolean(window.AGENTFLOW_EXPORT);
const loaded = {};
window.AGENTFLOW_DATA = window.AGENTFLOW_DATA || {};

function dataFile(key) {
  return "data/" + key.replace(/[^A-Za-z0-9-]/g, (c) => "_" + c.charCodeAt(0).toString(16).padStart(2, "0")) + ".js";
}

function loadExported(key) {
  if (key in window.AGENTFLOW_DATA) return Promise.resolve(window.AGENTFLOW_DATA[key]);
  if (!loaded[key]) {
    loaded[key] = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = dataFile(key);
      script.onload = () => (key in window.AGENTFLOW_DATA ? resolve(window.AGENTFLOW_DATA[key]) : reject(new Error("not exported: " + key)));
      script.onerror = () => reject(new Error("not exported: " + key));
      document.head.append(script);
    });
  }
  return loaded[key];
}

// The exported runs list is one file; filters, sort and pages are applied here as the server would.
const SORT_FIELDS = { started_at: "started_at", status: "status", workflow: "workflow", reward: "reward_mean",
  reward_min: "reward_min", first_error: "first_error_seq", tokens: "tokens", duration: "duration_s", steps: "steps",
  outcome: "outcome", cost: "cost" };
// A solved run's outcome is at least this (as a benchmark counts a correct sample); agentflow.traces.SOLVED_OUTCOME.
const SOLVED_OUTCOME = 0.5;
const OUTCOME_FILTERS = { passed: (o) => o !== null && o >= SOLVED_OUTCOME, failed: (o) => o !== null && o < SOLVED_OUTCOME,
  none: (o) => o === null };
function exportedRuns(query) {
  return loadExported("api/runs").then((all) => {
    const q = Object.fromEntries(query);
    let runs = all.runs.filter((run) => (!q.workflow || run.workflow === q.workflow) && (!q.status || run.status === q.status)
      && (!q.since || run.started_at >= q.since) && (!q.until || run.started_at < q.until)
      && (!q.text || ((run.final_answer || "") + "\n" + (run.error || "")).toLowerCase().includes(q.text.toLowerCase()))
      && (!q.bench || (all.bench_members[q.bench] || []).includes(run.run_id))
      && (!q.outcome || (OUTCOME_FILTERS[q.outcome] || (() => false))(run.outcome ?? null)));
    const field = SORT_FIELDS[q.sort || "started_at"] || "started_at";
    const sign = q.order === "asc" ? 1 : -1;
    runs.sort((a, b) => (a[field] === null) - (b[field] === null) || sign * ((a[field] > b[field]) - (a[field] < b[field]))
      || sign * ((a.run_id > b.run_id) - (a.run_id < b.run_id)));
    const offset = Number(q.offset || 0), limit = Number(q.limit || 50);
    return { total: runs.length, offset, limit, runs: runs.slice(offset, offset + limit) };
  });
}

async function getJSON(path) {
  if (EXPORTED) {
    const [base, query = ""] = path.split("?");
    return base === "api/runs" ? exportedRuns(new URLSearchParams(query)) : loadExported(path);
  }
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function fmt(value) { return typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toFixed(3)) : (value ?? ""); }
// Dollars; a run no price covers has no cost, which is unknown, not free.
function money(value) {
  if (typeof value !== "number") return "n/a";
  return "$" + (value === 0 || value >= 0.0001 ? value.toFixed(4) : value.toLocaleString("en-US", { maximumSignificantDigits: 3 }));
}
function outcomeClass(value) { return typeof value !== "number" ? "" : value >= SOLVED_OUTCOME ? "passed" : "unsolved"; }

// -- runs list -----------------------------------------------------------------------------------------------
const COLUMNS = [["run_id", null], ["workflow", "workflow"], ["status", "status"], ["started_at", "started_at"],
  ["outcome", "outcome"], ["duration_s", "duration"], ["steps", "steps"], ["tokens", "tokens"], ["cost", "cost"],
  ["reward_mean", "reward"], ["reward_min", "reward_min"], ["first_error_seq", "first_error"], ["final_answer", null],
  ["error", null]];

async function runsPage(params) {
  const state = Object.fromEntries(params);
  const form = el("form", { id: "filters" });
  for (const name of ["workflow", "status", "bench", "since", "until", "text"]) {
    form.append(el("label", {}, name + " ", el("input", { name, value: state[name] || "" })), " ");
  }
  const outcome = el("select", { name: "outcome" });
  for (const [value, label] of [["", "any"], ["passed", "passed"], ["failed", "failed"], ["none", "none"]]) {
    const option = el("option", { value }, label);
    option.selected = (state.outcome || "") === value;
    outcome.append(option);
  }
  form.append(el("label", {}, "outcome ", outcome), " ");
  form.append(el("button", { type: "submit" }, "filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams(new FormData(form));
    for (const key of ["sort", "order"]) if (state[key]) next.set(key, state[key]);
    location.hash = "#/?" + next.toString();
  });
  const query = new URLSearchParams(params);
  const data = await getJSON("api/runs?" + query.toString());
  const head = el("tr");
  for (const [column, sort] of COLUMNS) {
    const th = el("th", sort ? { "data-sort": sort } : {}, column);
    if (sort) th.addEventListener("click", () => {
      const next = new URLSearchParams(params);
      next.set("order", state.sort === sort && state.order !== "asc" ? "asc" : "desc");
      next.set("sort", sort);
      next.delete("offset");
      location.hash = "#/?" + next.toString();
    });
    head.append(th);
  }
  const table = el("table", { id: "runs" }, el("thead", {}, head));
  const body = el("tbody");
  for (const run of data.runs) {
    const tr = el("tr", { "data-run": run.run_id });
    for (const [column] of COLUMNS) {
      const td = el("td", { class: column === "status" ? run.status : column === "outcome" ? outcomeClass(run.outcome) : "",
        "data-column": column });
      if (column === "run_id") td.append(el("a", { href: "#/run/" + encodeURIComponent(run.run_id) }, run.run_id));
      else if (column === "final_answer") td.textContent = (run.final_answer || "").slice(0, 80);
      else if (column === "cost") td.textContent = money(run.cost ?? null);
      else td.textContent = fmt(run[column]);
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  const offset = data.offset, limit = data.limit;
  const pager = el("p", { id: "pager" }, `${data.total} runs; showing ${data.total ? offset + 1 : 0}–${offset + data.runs.length} `);
  for (const [label, to] of [["previous", offset - limit], ["next", offset + limit]]) {
    if (to < 0 || to >= data.total) continue;
    const link = el("a", { href: "#" }, label);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const next = new URLSearchParams(params);
      next.set("offset", String(to));
      location.hash = "#/?" + next.toString();
    });
    pager.append(link, " ");
  }
  const compare = el("p", {}, "compare: ", el("input", { id: "cmp-a", placeholder: "run A" }), " ",
    el("input", { id: "cmp-b", placeholder: "run B" }), " ");
  const go = el("button", { id: "cmp-go" }, "compare");
  go.addEventListener("click", () => {
    location.hash = `#/compare/${encodeURIComponent(document.getElementById("cmp-a").value)}/${encodeURIComponent(document.getElementById("cmp-b").value)}`;
  });
  compare.append(go);
  page.replaceChildren(form, pager, table, compare);
}

// -- run page -------------------------------------------------------------------------------------------------
function rewardColour(value) {
  if (typeof value !== "number") return "#ddd";
  const clamped = Math.max(0, Math.min(1, value));
  return `hsl(${Math.round(clamped * 120)}, 70%, 60%)`;
}

// Columns by the longest path from the start over forward edges (a loop's edge back is found by a depth-first walk
// and drawn bending below), rows within a column in template order: parallel branches stand side by side.
function layers(names, edges, start) {
  const out = new Map(names.map((name) => [name, []]));
  for (const edge of edges) if (out.has(edge.from) && out.has(edge.to)) out.get(edge.from).push(edge.to);
  const back = new Set(), state = new Map();
  const visit = (name) => {
    state.set(name, "open");
    for (const next of out.get(name)) {
      if (state.get(next) === "open") back.add(name + "\u0000" + next);
      else if (!state.has(next)) visit(next);
    }
    state.set(name, "done");
  };
  if (start && out.has(start)) visit(start);
  for (const name of names) if (!state.has(name)) visit(name);
  const column = Object.fromEntries(names.map((name) => [name, 0]));
  for (let pass = 0; pass < names.length; pass++) {  // longest path: relax the forward edges until nothing moves
    let moved = false;
    for (const [from, targets] of out) {
      for (const to of targets) {
        if (!back.has(from + "\u0000" + to) && column[to] < column[from] + 1) { column[to] = column[from] + 1; moved = true; }
      }
    }
    if (!moved) break;
  }
  const row = {}, used = {};
  for (const name of names) { row[name] = used[column[name]] || 0; used[column[name]] = row[name] + 1; }
  return { column, row, back };
}

function graphSvg(run, id = "graph") {
  const realized = run.realized;
  const names = run.template ? [...run.template.nodes] : Object.keys(realized.nodes);
  const edges = run.template ? run.template.edges : realized.edges;
  if (edges.some((edge) => edge.to === "END") && !names.includes("END")) names.push("END");
  const nodeReward = {};
  for (const reward of run.rewards) if (reward.node && typeof reward.value === "number") nodeReward[reward.node] = reward.value;
  for (const [name, node] of Object.entries(run.summary.nodes || {})) {
    if (nodeReward[name] === undefined && node && typeof node.reward === "number") nodeReward[name] = node.reward;
  }
  const { column, row, back } = layers(names, edges, run.template ? run.template.start : realized.path[0]);
  const x = (name) => 20 + column[name] * 150, y = (name) => 40 + row[name] * 55;
  const rows = Math.max(1, ...names.map((name) => row[name] + 1));
  const columns = Math.max(1, ...names.map((name) => column[name] + 1));
  const svg = el("svg:svg", { id, width: Math.max(300, columns * 150 + 40), height: rows * 55 + 110 });
  const taken = new Map(realized.edges.map((edge) => [edge.from + "\u0000" + edge.to, edge.count]));
  for (const edge of edges) {
    if (!names.includes(edge.from) || !names.includes(edge.to)) continue;
    const count = taken.get(edge.from + "\u0000" + edge.to) || 0;
    // forward edges go from a node's right side to the next column; a loop back bends below both nodes
    const loop = back.has(edge.from + "\u0000" + edge.to);
    const [x1, y1] = loop ? [x(edge.from) + 55, y(edge.from) + 30] : [x(edge.from) + 110, y(edge.from) + 15];
    const [x2, y2] = loop ? [x(edge.to) + 55, y(edge.to) + 30] : [x(edge.to), y(edge.to) + 15];
    const [cx, cy] = loop ? [(x1 + x2) / 2, Math.max(y1, y2) + 45] : [(x1 + x2) / 2, (y1 + y2) / 2];
    svg.append(el("svg:path", {
      d: `M${x1},${y1} Q${cx},${cy} ${x2},${y2}`, "data-kind": edge.kind || "edge",
      fill: "none", stroke: count ? "#225" : "#bbb", "stroke-width": count ? 3 : 1, class: count ? "taken" : "untaken",
      "stroke-dasharray": edge.kind === "parallel" || edge.kind === "join" || edge.kind === "map" ? "4 3" : "none",
    }));
    if (count) svg.append(el("svg:text", { x: cx, y: loop ? cy - 18 : cy - 4 }, "×" + count));
  }
  for (const name of names) {
    const visits = realized.nodes[name] ? realized.nodes[name].visits : 0;
    const group = el("svg:g", { class: "node", "data-node": name, "data-visits": visits,
      "data-column": column[name], "data-row": row[name] });
    group.append(el("svg:rect", { x: x(name), y: y(name), width: 110, height: 30, rx: 6,
      fill: visits ? rewardColour(nodeReward[name]) : "#f4f4f4", stroke: visits ? "#000" : "#bbb" }));
    group.append(el("svg:text", { x: x(name) + 6, y: y(name) + 19 }, `${name}${visits ? " (" + visits + ")" : ""}`));
    svg.append(group);
  }
  const order = el("div", {}, el("p", { id: "path" }, "path: " + realized.path.join(" → ")));
  for (const choice of realized.best_of || []) {  // a best-of visit: every candidate, its score, the one kept
    const parts = choice.candidates.map((c) => `${c.branch} ${typeof c.score === "number" ? fmt(c.score) : "no score"}` +
      (c.branch === choice.chosen ? " (kept)" : ""));
    order.append(el("p", { class: "best-of" }, `best of ${choice.node} by ${choice.by}: ${parts.join(" · ")}`));
  }
  return [svg, order];
}

function describe(event) {
  const data = event.data || {};
  const bits = [event.seq, event.type, (event.node || "") + (data.branch ? ` [${data.branch}]` : "")];
  if (data.tool) bits.push(data.tool);
  if (event.type === "sandbox_exec" && Array.isArray(data.cmd)) bits.push(`$ ${data.cmd.join(" ").slice(0, 60)} → ${data.exit_code}`);
  if (typeof data.duration_s === "number") bits.push(`${data.duration_s.toFixed(3)} s`);
  if (data.value !== undefined) bits.push("reward " + fmt(data.value));
  const message = data.message && typeof data.message === "object" ? data.message.content : data.message;
  if (message) bits.push(String(message).slice(0, 80));
  return bits.join("  ");
}

// A step's own parts, each as text: the messages of a model turn, a tool call's arguments and result, a command.
function stepParts(event) {
  const data = event.data || {};
  const text = (value) => typeof value === "string" ? value : JSON.stringify(value, null, 2);
  const parts = [];
  if (event.type === "model_request" && Array.isArray(data.messages)) {
    for (const message of data.messages) {
      parts.push(el("div", { class: "message " + String(message.role) }, el("b", {}, String(message.role) + ": "), text(message.content ?? "")));
    }
    if (Array.isArray(data.tools) && data.tools.length) {
      parts.push(el("p", { class: "tools" }, "tools offered: " + data.tools.map((t) => (t.function || t).name).join(", ")));
    }
  } else if (event.type === "model_response") {
    const message = data.message || {};
    parts.push(el("div", { class: "message assistant" }, el("b", {}, "assistant: "), text(message.content ?? "")));
    for (const call of data.tool_calls || []) parts.push(el("pre", { class: "tool-call" }, `${call.name}(${prettyJson(call.arguments)})`));
    if (data.usage) parts.push(el("p", {}, `tokens: ${data.usage.input_tokens} in, ${data.usage.output_tokens} out`));
  } else if (event.type === "tool_call") {
    parts.push(el("pre", { class: "tool-call" }, `${data.tool}(${prettyJson(data.arguments)})`));
  } else if (event.type === "tool_result") {
    parts.push(el("p", { class: data.ok ? "passed" : "error" }, data.ok ? "ok" : "error: " + text(data.error)));
    parts.push(el("pre", { class: "output" }, text(data.content ?? "")));
  } else if (event.type === "sandbox_exec") {
    parts.push(el("pre", { class: "command" }, `$ ${(data.cmd || []).join(" ")}\nexit ${data.exit_code}` +
      (data.timed_out ? " (timed out)" : "") + (data.truncated ? " (output truncated)" : "") + ` · by ${data.by}`));
    if (data.stdout) parts.push(el("pre", { class: "output" }, text(data.stdout)));
    if (data.stderr) parts.push(el("pre", { class: "output stderr" }, text(data.stderr)));
  }
  return parts;
}

function prettyJson(value) {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
}

// An LSP reward's analysis bundle: the server that judged the step, the counts the reward was computed from, the
// safety checks, the names it resolved and every diagnostic (LSP severities: 1 error, 2 warning, 3 info, 4 hint).
const SEVERITY = { 1: "error", 2: "warning", 3: "info", 4: "hint" };
function lspBundle(bundleId, bundle) {
  const server = bundle.server || {};
  const safety = Object.entries(bundle.safety || {}).map(([check, ok]) => `${check} ${ok ? "ok" : "FAILED"}`).join(", ");
  const symbols = bundle.symbols || {};
  const view = el("div", { class: "lsp-bundle", "data-bundle": String(bundleId || "") },
    el("h4", {}, `LSP analysis: ${server.name || "?"} ${server.version || ""}`),
    el("p", {}, `diagnostics ${fmt(bundle.d_prev)} → ${fmt(bundle.d)} · safety: ${safety || "-"} · names resolved ` +
      `${fmt(symbols.resolved)}/${fmt(symbols.queried)}${symbols.method ? " (" + symbols.method + ")" : ""}`));
  const table = el("table", { class: "diagnostics" },
    el("tr", {}, el("th", {}, "file"), el("th", {}, "line"), el("th", {}, "severity"), el("th", {}, "code"), el("th", {}, "message")));
  for (const d of bundle.diagnostics) {
    const line = Array.isArray(d.range) ? `${d.range[0] + 1}:${d.range[1] + 1}` : "";
    table.append(el("tr", { class: "diagnostic " + (SEVERITY[d.severity] || "") }, el("td", {}, d.path), el("td", {}, line),
      el("td", {}, SEVERITY[d.severity] || String(d.severity)), el("td", {}, d.code ?? ""), el("td", {}, d.message)));
  }
  if (!bundle.diagnostics.length) table.append(el("tr", {}, el("td", { colspan: 5 }, "no diagnostics")));
  view.append(table);
  return view;
}

// A unified diff, a line per element so that added and removed lines are coloured by class, never by markup.
function diffView(change) {
  const view = el("pre", { class: "diff", "data-path": change.path });
  for (const line of change.diff.split("\n")) {
    const kind = line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("+") ? "added"
      : line.startsWith("-") ? "removed" : line.startsWith("@@") ? "hunk" : "same";
    view.append(el("span", { class: kind }, line + "\n"));
  }
  return el("div", { class: "diffs" }, el("h4", {}, "file diff" + (change.path ? ": " + change.path : "")), view);
}

// The header's parts: the run, its workflow, its status, outcome and cost (the run index's, marked so, until the
// whole trace is verified), and its replay report.
function runHeader(run) {
  const fromIndex = new Set(run.from_index || []);
  const marked = (key, attrs) => fromIndex.has(key)
    ? { ...attrs, class: `${attrs.class || ""} from-index`.trim(), title: "as the run index recorded it: only the whole trace, verified, would tell" }
    : attrs;
  const parts = [`${run.run_id} · ${run.summary.workflow || ""} · `,
    el("span", marked("status", { class: run.summary.status, id: "run-status" }), run.summary.status)];
  if (typeof run.summary.outcome === "number") {
    parts.push(" · outcome ", el("span", marked("outcome", { class: outcomeClass(run.summary.outcome), id: "run-outcome" }), fmt(run.summary.outcome)));
  }
  if (typeof run.summary.cost === "number") parts.push(" · ", el("span", marked("cost", { id: "run-cost" }), money(run.summary.cost)));
  if (run.summary.replay_of) {  // a replay: its report is the comparison with the run it replays
    parts.push(" · ", el("a", { id: "replay-report",
      href: `#/compare/${encodeURIComponent(run.summary.replay_of)}/${encodeURIComponent(run.run_id)}` }, "replay report"));
  }
  return parts;
}

// How far the server has verified the trace (each event's hash and its link to the one before, from the first on).
function verificationText(status) {
  const count = (n) => n.toLocaleString("en-US");
  if (status.state === "verifying") return `verifying the trace: ${count(status.checked)} / ${count(status.total)} events checked`;
  if (status.state === "verified") return `trace verified: ${count(status.total)} events`;
  return `trace damaged: only its first ${count(status.verified)} of ${count(status.total)} events are verified`;
}

async function runPageView(runId) {
  // The timeline is virtual: only the rows in view exist, and pages of events are fetched as they scroll in.
  // `events` holds only verified events; what the server sent unverified is kept apart and shown marked.
  const events = [], pages = new Map(), uncertainPages = new Set();
  let unverified = new Map();
  function fetchPage(start) {
    return getJSON(`api/runs/${encodeURIComponent(runId)}/events?from=${start}&limit=${EVENTS_PAGE}`).then((data) => {
      data.events.forEach((event) => { events[event.seq] = event; });
      for (const event of data.unverified || []) if (!events[event.seq]) unverified.set(event.seq, event);
      if ((data.unverified || []).length) uncertainPages.add(start);
    });
  }
  // The first page is asked for with the run itself: the server answers both from the trace's first lines verified.
  const firstPage = fetchPage(0);
  firstPage.catch(() => {});  // a run that is not there is reported by the run's own answer
  pages.set(0, firstPage);
  let run = await getJSON("api/runs/" + encodeURIComponent(runId));
  const header = el("h2", { id: "run-title" });
  const problems = el("p", { class: "error", id: "problems" });
  const verification = el("p", { id: "verification" });
  const partial = el("p", { id: "partial" });
  const drawing = el("div", { id: "drawing" });
  const timeline = el("div", { id: "timeline" });
  const spacer = el("div", {});
  timeline.append(spacer);
  const detail = el("div", { id: "detail" }, "click a step");
  const forks = el("div", { id: "forks" });
  page.replaceChildren(header, verification, problems, drawing, partial, forks, el("p", { id: "count" }), timeline, detail);
  let liveFinished = false;
  function drawRun() {
    header.replaceChildren(...runHeader(run));
    if (liveFinished) document.getElementById("run-status").textContent = "finished";
    drawing.replaceChildren(...graphSvg(run));
    const which = run.verification.state === "verifying" ? "the ones verified so far" : "the ones before the damage";
    partial.textContent = run.covers < run.events
      ? `the graph, the path and the rewards are of the first ${run.covers.toLocaleString("en-US")} events, ${which}` : "";
  }
  function showVerification(status) {
    verification.dataset.state = status.state;
    verification.textContent = verificationText(status);
    problems.textContent = [...new Set([...status.problems, ...liveProblems])].join("; ");
  }
  drawRun();
  forkTree(run, forks);  // drawn when it arrives: the timeline does not wait for it

  let damaged = new Set(run.verification.problem_seqs);
  let total = run.events;
  const liveProblems = [];
  function setTotal(next) {
    total = next;
    spacer.style.height = `${total * ROW}px`;
    document.getElementById("count").textContent = `${total} events`;
  }
  setTotal(total);
  showVerification(run.verification);
  async function ensure(from, to) {
    for (let start = Math.floor(from / EVENTS_PAGE) * EVENTS_PAGE; start < to; start += EVENTS_PAGE) {
      if (!pages.has(start)) pages.set(start, fetchPage(start));
    }
    await Promise.all([...pages.values()]);
  }
  const rows = new Map();
  async function render() {
    const first = Math.floor(timeline.scrollTop / ROW);
    const last = Math.min(total, first + Math.ceil(timeline.clientHeight / ROW) + 5);
    await ensure(first, last);
    for (const [seq, row] of rows) if (seq < first || seq >= last) { row.remove(); rows.delete(seq); }
    for (let seq = first; seq < last; seq++) {
      const event = events[seq] || unverified.get(seq);
      if (rows.has(seq) || !event) continue;
      const row = el("div", { class: events[seq] ? "row" : "row unverified", "data-seq": seq }, describe(event));
      if (!events[seq]) {
        const mark = damaged.has(seq) ? "damaged" : "unverified";
        row.prepend(el("span", { class: "mark " + mark, title: mark === "damaged" ? "this event failed verification"
          : "this event is not part of the verified trace" }, mark), " ");
      }
      row.style.top = `${seq * ROW}px`;
      row.addEventListener("click", () => showSeq(seq));
      spacer.append(row);
      rows.set(seq, row);
    }
  }
  function redrawRows() {  // after the verification moved on: every row drawn again, marked as it is now
    for (const row of rows.values()) row.remove();
    rows.clear();
    return render();
  }
  let diffs = null;  // the file diffs of the run's steps (by tool_call seq), fetched on the first step opened
  let opened = null;  // the seq of the step shown, drawn again once the verification has moved on
  async function showSeq(seq) {
    if (!events[seq] && !unverified.has(seq)) await ensure(seq, seq + 1);  // its page was dropped meanwhile
    return events[seq] ? showStep(events[seq], true) : showStep(unverified.get(seq), false);
  }
  async function showStep(event, verified) {
    if (!event) return;
    opened = event.seq;
    const related = verified ? run.rewards.filter((reward) => reward.target_seq === event.seq) : [];
    detail.replaceChildren(el("h3", {}, `#${event.seq} ${event.type}${event.node ? " · " + event.node : ""}` +
      (event.data && event.data.branch ? ` [${event.data.branch}]` : "") +
      (event.data && typeof event.data.duration_s === "number" ? ` · ${event.data.duration_s.toFixed(3)} s` : "")));
    if (!verified) {
      detail.append(el("p", { class: "error", id: "step-unverified" }, damaged.has(event.seq)
        ? "this event failed verification: its content is not what was recorded"
        : run.verification.state === "verifying" ? "not verified yet: the trace is still being verified"
        : "not verified: it comes after the damage in this trace"));
    }
    detail.append(...stepParts(event));
    for (const reward of related) {
      const bundle = reward.components && reward.components.bundle;
      const shown = bundle ? { ...reward.components, bundle: undefined } : reward.components;
      const box = el("div", { class: "reward" }, `reward ${reward.hook}: ${fmt(reward.value)} ${reward.explanation}\n` +
        JSON.stringify(shown, null, 2));
      if (bundle && Array.isArray(bundle.diagnostics)) box.append(lspBundle(reward.components.bundle_id, bundle));
      detail.append(box);
    }
    const raw = el("details", {}, el("summary", {}, "the event as recorded"), el("pre", { id: "step" }, JSON.stringify(event, null, 2)));
    detail.append(raw);
    for (const match of JSON.stringify(event.data).matchAll(/"\$blob":"([0-9a-f]{64})"/g)) {
      const button = el("button", {}, "load payload " + match[1].slice(0, 12));
      button.addEventListener("click", async () => {
        const text = EXPORTED ? (await loadExported("api/blobs/" + match[1])).text
          : await (await fetch("api/blobs/" + match[1])).text();
        button.replaceWith(el("div", { class: "blob" }, text));
      });
      detail.append(button);
    }
    if (verified && event.type === "tool_call") {
      diffs = diffs || await getJSON(`api/runs/${encodeURIComponent(run.run_id)}/diffs`);
      for (const change of diffs[String(event.seq)] || []) detail.append(diffView(change));
    }
  }
  timeline.addEventListener("scroll", () => { render(); });
  await render();

  let tailing = false;
  function tail() {
    if (run.finished || EXPORTED || tailing) return;
    tailing = true;
    const source = new EventSource(`api/runs/${encodeURIComponent(run.run_id)}/live?after=${total - 1}`);
    source.addEventListener("trace", (message) => {
      const event = JSON.parse(message.data);
      events[event.seq] = event;  // the server verified it, against the chain from the trace's first event
      unverified.delete(event.seq);
      if (event.seq >= total) setTotal(event.seq + 1);
      render();
    });
    source.addEventListener("problem", (message) => {
      liveProblems.push(JSON.parse(message.data));
      problems.textContent = [...new Set([...run.verification.problems, ...liveProblems])].join("; ");
    });
    source.addEventListener("finished", () => {
      source.close();
      liveFinished = true;
      document.getElementById("run-status").textContent = "finished";
    });
  }
  tail();

  // Until the whole trace is verified, its progress is asked for; then the page is drawn again from the whole run.
  async function poll() {
    if (!verification.isConnected) return;  // the page shows another view now
    let status;
    try {
      status = await getJSON(`api/runs/${encodeURIComponent(run.run_id)}/verification`);
      if (status.state !== "verifying") {
        // the run as verified: of the very trace read for this page, not read again if the run is still going
        run = await getJSON(`api/runs/${encodeURIComponent(run.run_id)}?again=no`);
      }
    } catch (error) {
      verification.dataset.state = "unknown";
      verification.textContent = "the verification's progress is unknown: " + String(error.message || error);
      return;
    }
    if (!verification.isConnected) return;
    if (status.state === "verifying") {
      showVerification(status);
      setTimeout(poll, VERIFICATION_POLL_MS);
      return;
    }
    await Promise.allSettled([...pages.values()]);  // a page asked for before the end is dropped with the others
    if (!verification.isConnected) return;
    damaged = new Set(run.verification.problem_seqs);
    unverified = new Map();
    for (const start of uncertainPages) pages.delete(start);
    uncertainPages.clear();
    drawRun();
    setTotal(Math.max(run.events, tailing ? total : 0));
    await redrawRows();
    if (opened !== null) await showSeq(opened);
    showVerification(run.verification);  // last: once it says so, every part of the page is drawn anew
    tail();
  }
  if (run.verification.state === "verifying" && !EXPORTED) setTimeout(poll, VERIFICATION_POLL_MS);
}

// -- forks: the run a run was forked from, and its fork groups as a tree of continuations ----------------------
async function forkTree(run, into) {
  const parent = run.summary.forked_from;
  if (parent) {
    into.append(el("p", { id: "forked-from" }, "forked from ",
      el("a", { href: "#/run/" + encodeURIComponent(parent) }, parent), ` (group ${run.summary.fork_group || "?"}) · `,
      el("a", { href: `#/compare/${encodeURIComponent(parent)}/${encodeURIComponent(run.run_id)}` }, "compare with it")));
  }
  let tree;
  try {
    tree = await getJSON(`api/runs/${encodeURIComponent(run.run_id)}/forks`);
  } catch (error) {
    return;  // an exported site without this run's forks
  }
  if (tree.groups.length) into.append(el("h3", {}, "forks"), groupsList(run.run_id, tree.groups));
}

function groupsList(parentId, groups) {
  const list = el("ul", { class: "fork-groups" });
  for (const group of groups) {
    const counts = {};
    for (const child of group.runs) counts[child.status] = (counts[child.status] || 0) + 1;
    const summary = Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ");
    const runs = el("ul", {});
    for (const child of group.runs) {
      const item = el("li", { "data-run": child.run_id },
        el("a", { href: "#/run/" + encodeURIComponent(child.run_id) }, child.run_id), " ",
        el("span", { class: child.status }, child.status), ` reward ${fmt(child.reward_mean)} · `,
        el("a", { href: `#/compare/${encodeURIComponent(parentId)}/${encodeURIComponent(child.run_id)}` }, "compare"));
      if (child.forks.length) item.append(groupsList(child.run_id, child.forks));
      runs.append(item);
    }
    list.append(el("li", { class: "fork-group", "data-group": group.group },
      `group ${group.group} at seq ${group.seq ?? "?"} (step ${group.step ?? "?"}): ${group.runs.length} continuations, ${summary}`, runs));
  }
  return list;
}

// -- compare ------------------------------------------------------------------------------------------
async function comparePage(a, b) {
  const data = await getJSON(`api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const runs = [data.a, data.b];
  const table = el("table", { id: "compare" }, el("tr", {}, el("th"),
    ...runs.map((run) => el("th", {}, el("a", { href: "#/run/" + encodeURIComponent(run.run_id) }, run.run_id)))));
  for (const key of ["status", "workflow", "outcome", "steps", "tokens", "cost", "duration_s"]) {
    const cell = (run) => key === "cost" ? money(run.summary.cost) : fmt(run.summary[key]);
    table.append(el("tr", {}, el("td", {}, key), ...runs.map((run) => el("td", { "data-key": key }, cell(run)))));
  }
  // The realized graphs side by side, each over its template and coloured by its own rewards.
  const graphs = el("div", { id: "compare-graphs", class: "side-by-side" });
  runs.forEach((run, index) => {
    const [svg, order] = graphSvg(run, `graph-${"ab"[index]}`);
    graphs.append(el("div", { class: "side" }, el("h3", {}, run.run_id), svg, order));
  });
  // Rewards per node: each run's node-level rewards (their mean when a node has several) and visits.
  const perNode = runs.map((run) => nodeRewards(run));
  const nodes = [...new Set([...Object.keys(data.a.realized.nodes), ...Object.keys(data.b.realized.nodes)])];
  const rewards = el("table", { id: "compare-rewards" },
    el("tr", {}, el("th", {}, "node"), el("th", {}, "visits A"), el("th", {}, "reward A"), el("th", {}, "visits B"),
      el("th", {}, "reward B"), el("th", {}, "B − A")));
  for (const node of nodes) {
    const [ra, rb] = perNode.map((rewardsOf) => rewardsOf[node]);
    const delta = typeof ra === "number" && typeof rb === "number" ? fmt(rb - ra) : "";
    rewards.append(el("tr", { "data-node": node }, el("td", {}, node),
      el("td", {}, fmt(data.a.realized.nodes[node]?.visits ?? 0)), el("td", {}, fmt(ra)),
      el("td", {}, fmt(data.b.realized.nodes[node]?.visits ?? 0)), el("td", {}, fmt(rb)), el("td", {}, delta)));
  }
  const title = data.replay
    ? el("h2", {}, `replay report: ${data.replay.replay} replays ${data.replay.original}`)
    : el("h2", {}, "compare");
  const divergence = data.divergence
    ? el("pre", { id: "divergence" }, `first difference at event ${data.divergence.index} (node ${data.divergence.node ?? "-"})\n${data.divergence.diff}`)
    : el("p", { id: "divergence" }, data.replay ? "identical: the replay recorded the same events" : "no difference");
  page.replaceChildren(title, table, graphs, el("h3", {}, "rewards per node"), rewards, el("h3", {}, "first divergence"), divergence);
}

function nodeRewards(run) {
  const sums = {}, counts = {};
  for (const reward of run.rewards) {
    if (!reward.node || typeof reward.value !== "number") continue;
    sums[reward.node] = (sums[reward.node] || 0) + reward.value;
    counts[reward.node] = (counts[reward.node] || 0) + 1;
  }
  return Object.fromEntries(Object.keys(sums).map((node) => [node, sums[node] / counts[node]]));
}

// -- bench pages ------------------------------------------------------------------------------------------------
function seconds(value) { return typeof value === "number" ? value.toFixed(1) + " s" : "n/a"; }
function share(value) { return typeof value === "number" ? value.toFixed(3) : "n/a"; }

async function benchList() {
  const data = await getJSON("api/bench");
  const table = el("table", { id: "bench-runs" }, el("thead", {}, el("tr", {},
    ...["bench run", "name", "created", "tasks", "epochs", "routing"].map((name) => el("th", {}, name)))));
  const body = el("tbody");
  for (const run of data.bench_runs) {
    const config = run.config || {};
    body.append(el("tr", { "data-bench": run.bench_run_id },
      el("td", {}, el("a", { href: "#/bench/" + encodeURIComponent(run.bench_run_id) }, run.bench_run_id)),
      el("td", {}, run.name), el("td", {}, run.created_at), el("td", {}, fmt((config.task_ids || []).length)),
      el("td", {}, fmt(config.epochs)), el("td", {}, config.routing || "")));
  }
  table.append(body);
  page.replaceChildren(el("h2", {}, "benchmark runs"), table);
}

function benchFigures(report) {
  const config = report.config || {};
  const figures = [["tasks", fmt(report.tasks.length)], ["epochs", fmt(config.epochs)],
    ["pairs", fmt(report.pairs)], ["scored", fmt(report.scored)], ["correct", fmt(report.correct)]];
  for (const [k, value] of Object.entries(report.pass_at_k)) figures.push([k, share(value), value]);
  figures.push(["errored", fmt(report.errored)], ["retried", fmt(report.retried)], ["unfinished", fmt(report.unfinished)],
    ["tokens", fmt(report.tokens)], ["model calls", fmt(report.model_calls)], ["cost", money(report.cost)],
    ["cost per success", money(report.cost_per_success)], ["wall time", seconds(report.wall_s)],
    ["model", config.model || "as in the workflow"]);
  if (config.routing) figures.push(["routing", config.routing]);
  if (report.checkpoints) figures.push(["checkpoint PQS", share(report.checkpoints.pqs)], ["overthinking", share(report.checkpoints.overthinking)]);
  const table = el("table", { id: "bench-figures" });
  for (const [name, text, value] of figures) {
    const row = el("tr", { "data-figure": name }, el("th", {}, name), el("td", {}, text));
    if (value !== undefined) row.dataset.value = String(value);  // the exact figure, for whoever reads the page
    table.append(row);
  }
  const notes = [table, el("p", {}, el("a", { id: "bench-runs-link", href: "#/?bench=" + encodeURIComponent(report.bench_run_id) },
    "its runs in the runs list"))];
  if ((report.unpriced_models || []).length) {
    notes.push(el("p", { id: "bench-unpriced" }, "no price for " + report.unpriced_models.join(", ") + " (their tokens are not in the cost)"));
  }
  return notes;
}

function attemptLink(attempt) {
  const verdict = attempt.status === "errored" ? "errored" : outcomeClass(attempt.outcome);
  const label = `e${attempt.epoch}` + (attempt.attempt > 1 ? `.${attempt.attempt}` : "");
  return el("a", { href: "#/run/" + encodeURIComponent(attempt.run_id), "data-run": attempt.run_id,
    class: [verdict, attempt.counted ? "" : "superseded"].filter(Boolean).join(" "),
    title: `epoch ${attempt.epoch}, attempt ${attempt.attempt}: ${attempt.status}, outcome ${fmt(attempt.outcome ?? "none")}` +
      (attempt.counted ? "" : " (not counted)") }, label);
}

function taskTable(report) {
  const ks = Object.keys(report.pass_at_k);
  const attempts = {};
  for (const attempt of report.attempts) (attempts[attempt.task_id] = attempts[attempt.task_id] || []).push(attempt);
  const columns = [["task", (t) => t.task_id], ["samples", (t) => t.samples], ["correct", (t) => t.correct],
    ...ks.map((k) => [k, (t) => t.pass_at_k[k] ?? null]), ["errored", (t) => t.errored], ["tokens", (t) => t.tokens],
    ["cost", (t) => t.cost ?? null]];
  const cell = (name, value) => name === "cost" ? money(value) : ks.includes(name) ? (value === null ? "" : share(value)) : fmt(value);
  const body = el("tbody");
  let sorted = { column: "task", sign: 1 };
  function draw() {
    const key = columns.find(([name]) => name === sorted.column)[1];
    // unknown figures (no sample, no price) sort last either way
    const tasks = [...report.tasks].sort((a, b) => (key(a) === null) - (key(b) === null)
      || sorted.sign * ((key(a) > key(b)) - (key(a) < key(b))) || (a.task_id > b.task_id) - (a.task_id < b.task_id));
    body.replaceChildren(...tasks.map((task) => {
      const row = el("tr", { "data-task": task.task_id });
      for (const [name, value] of columns) row.append(el("td", { "data-column": name }, cell(name, value(task))));
      const links = el("td", { "data-column": "runs" });
      const mine = (attempts[task.task_id] || []).sort((a, b) => a.epoch - b.epoch || a.attempt - b.attempt);
      mine.forEach((attempt, index) => { if (index) links.append(" "); links.append(attemptLink(attempt)); });
      row.append(links);
      return row;
    }));
  }
  const head = el("tr");
  for (const [name] of columns) {
    const th = el("th", { "data-key": name }, name);
    th.addEventListener("click", () => {
      sorted = { column: name, sign: sorted.column === name ? -sorted.sign : name === "task" ? 1 : -1 };
      head.querySelectorAll("th").forEach((other) => { delete other.dataset.order; });
      th.dataset.order = sorted.sign > 0 ? "asc" : "desc";
      draw();
    });
    head.append(th);
  }
  head.append(el("th", {}, "runs"));
  draw();
  return el("table", { id: "bench-tasks" }, el("thead", {}, head), body);
}

const HIST_W = 320, HIST_H = 120, HIST_BINS = 10;
function histogram(name, values) {
  const box = el("div", { class: "distribution", "data-hook": name }, el("h4", {}, name));
  if (!values.length) { box.append(el("p", {}, "no values")); return box; }
  const low = Math.min(0, ...values), high = Math.max(1, ...values);
  const counts = new Array(HIST_BINS).fill(0);
  for (const value of values) counts[Math.min(HIST_BINS - 1, Math.floor((value - low) / (high - low) * HIST_BINS))]++;
  const tallest = Math.max(...counts), width = HIST_W / HIST_BINS;
  const svg = el("svg:svg", { class: "histogram", width: HIST_W + 40, height: HIST_H + 36 });
  counts.forEach((count, bin) => {
    const height = count / tallest * HIST_H;
    const from = low + (high - low) * bin / HIST_BINS, to = from + (high - low) / HIST_BINS;
    const bar = el("svg:rect", { class: "bar", x: 30 + bin * width + 1, y: 10 + HIST_H - height, width: width - 2,
      height, fill: rewardColour(((from + to) / 2 - low) / (high - low)), "data-count": count, "data-from": from, "data-to": to },
    el("svg:title", {}, `${fmt(from)} to ${fmt(to)}: ${count} runs`));
    svg.append(bar);
  });
  svg.append(el("svg:line", { x1: 30, y1: 10 + HIST_H, x2: 30 + HIST_W, y2: 10 + HIST_H, stroke: "#000" }),
    el("svg:text", { x: 30, y: HIST_H + 26 }, fmt(low)), el("svg:text", { x: HIST_W + 10, y: HIST_H + 26 }, fmt(high)),
    el("svg:text", { x: 0, y: 20 }, String(tallest)), el("svg:text", { x: 8, y: 10 + HIST_H }, "0"));
  const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
  box.append(svg, el("p", { class: "figures" },
    `${values.length} runs · min ${fmt(Math.min(...values))} · mean ${fmt(mean)} · max ${fmt(Math.max(...values))}`));
  return box;
}

function distributions(report) {
  const section = el("section", { id: "bench-rewards" }, el("h3", {}, "reward distributions"));
  const outcomes = report.outcomes.map((o) => o.value).filter((value) => typeof value === "number");
  const hook = report.config.outcome.hook;
  const box = histogram(hook === "outcome" ? "outcome" : `outcome (${hook})`, outcomes);
  box.dataset.hook = "outcome";
  const unscored = report.outcomes.length - outcomes.length;
  if (unscored) box.append(el("p", {}, `${unscored} samples without an outcome`));
  section.append(box);
  for (const [hook, runs] of Object.entries(report.run_rewards)) {
    const figures = report.process_rewards[hook] || {};
    const shown = histogram(`${hook}: each run's mean reward`, runs.map((run) => run.mean));
    shown.dataset.hook = hook;
    if (typeof figures.first_error_index === "number") shown.append(el("p", {}, `mean first-error index ${fmt(figures.first_error_index)}`));
    section.append(shown);
  }
  return section;
}

// the moving average covers the last 10 episodes, or a twentieth of them on a long benchmark
const CURVE_W = 640, CURVE_H = 180, CURVE_WINDOW = 10, CURVE_WINDOWS = 20;
function learningCurve(curve) {
  const points = curve.episodes.filter((point) => typeof point.total_reward === "number");
  const box = el("div", { class: "learning", "data-router": curve.router },
    el("h4", {}, `Q-table ${curve.workflow} / ${curve.router}: episode reward`));
  if (!points.length) { box.append(el("p", {}, "no episode has a reward")); return box; }
  const span = Math.min(points.length, Math.max(CURVE_WINDOW, Math.round(points.length / CURVE_WINDOWS)));
  const averages = points.map((_, index) => {
    const recent = points.slice(Math.max(0, index - span + 1), index + 1);
    return recent.reduce((sum, point) => sum + point.total_reward, 0) / recent.length;
  });
  const rewards = points.map((point) => point.total_reward);
  let low = Math.min(...rewards), high = Math.max(...rewards);
  if (high === low) { low -= 1; high += 1; }
  const x = (index) => 50 + (points.length > 1 ? index / (points.length - 1) : 0.5) * CURVE_W;
  const y = (value) => 10 + (high - value) / (high - low) * CURVE_H;
  const svg = el("svg:svg", { class: "curve", width: CURVE_W + 70, height: CURVE_H + 40 });
  svg.append(el("svg:line", { x1: 50, y1: 10 + CURVE_H, x2: 50 + CURVE_W, y2: 10 + CURVE_H, stroke: "#000" }),
    el("svg:line", { x1: 50, y1: 10, x2: 50, y2: 10 + CURVE_H, stroke: "#000" }),
    el("svg:text", { x: 0, y: 20 }, fmt(high)), el("svg:text", { x: 0, y: 10 + CURVE_H }, fmt(low)),
    el("svg:text", { x: 50, y: CURVE_H + 30 }, "episode " + points[0].episode),
    el("svg:text", { x: CURVE_W - 40, y: CURVE_H + 30 }, "episode " + points[points.length - 1].episode));
  svg.append(el("svg:polyline", { class: "episode-reward", fill: "none", stroke: "#99a", "stroke-width": 1,
    points: points.map((point, index) => `${x(index)},${y(point.total_reward)}`).join(" ") }));
  svg.append(el("svg:polyline", { class: "moving-average", fill: "none", stroke: "#225", "stroke-width": 3,
    points: averages.map((value, index) => `${x(index)},${y(value)}`).join(" ") }));
  points.forEach((point, index) => {
    svg.append(el("svg:circle", { class: "episode " + outcomeClass(point.outcome), cx: x(index), cy: y(point.total_reward), r: 3,
      fill: typeof point.outcome !== "number" ? "#999" : point.outcome >= SOLVED_OUTCOME ? "#070" : "#b00",
      "data-run": point.run_id },
    el("svg:title", {}, `episode ${point.episode} (${point.task_id}, epoch ${point.epoch}): reward ${fmt(point.total_reward)}, ` +
      `outcome ${fmt(point.outcome ?? "none")}, epsilon ${fmt(point.epsilon ?? "none")}`)));
  });
  const solved = (part) => part.filter((point) => typeof point.outcome === "number" && point.outcome >= SOLVED_OUTCOME).length;
  const half = Math.floor(points.length / 2);
  box.append(svg, el("p", { class: "figures" }, `${points.length} episodes · moving average of ${span} · ` +
    `mean reward ${fmt(rewards.reduce((sum, value) => sum + value, 0) / rewards.length)} · last average ${fmt(averages[averages.length - 1])} · ` +
    `solved ${solved(points.slice(0, half))}/${half} in the first half, ${solved(points.slice(half))}/${points.length - half} in the second`));
  return box;
}

async function benchPage(id) {
  if (!id) return benchList();
  const report = await getJSON("api/bench/" + encodeURIComponent(id));
  const parts = [el("h2", { id: "bench-title" }, `${report.name} · bench run ${report.bench_run_id}`), ...benchFigures(report),
    el("h3", {}, "tasks"), taskTable(report), distributions(report)];
  const structure = report.structure;
  const shape = el("section", { id: "bench-structure" }, el("h3", {}, "realized graphs"), el("p", {},
    `steps ${share(structure.steps_mean)} on average (variance across tasks ${share(structure.steps_variance_across_tasks)}), ` +
    `distinct nodes ${share(structure.nodes_mean)}, edges ${share(structure.edges_mean)}, loop iterations ${share(structure.loop_iterations_mean)}`));
  const paths = el("ul", { id: "bench-paths" });
  for (const [path, count] of structure.common_paths) paths.append(el("li", {}, `${count} × ${path}`));
  shape.append(paths);
  if (report.learning.length) {
    parts.push(el("section", { id: "bench-learning" }, el("h3", {}, "learning curve"), ...report.learning.map(learningCurve)));
  }
  parts.push(shape);
  page.replaceChildren(...parts);
}

async function route() {
  const hash = location.hash.slice(1) || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  delete page.dataset.ready;
  try {
    if (parts[0] === "run") await runPageView(parts[1]);
    else if (parts[0] === "compare") await comparePage(parts[1], parts[2]);
    else if (parts[0] === "bench") await benchPage(parts[1]);
    else await runsPage(new URLSearchParams(query));
  } catch (error) {
    page.replaceChildren(el("p", { class: "error", id: "error" }, String(error.message || error)));
  }
  page.dataset.ready = location.hash; // which view the page shows, once it is drawn
}

window.addEventListener("hashchange", route);
route();
