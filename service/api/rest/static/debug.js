// advantage-service /debug: generate or paste a trajectory, POST /v1/advantage, plot the result.
// Plain SVG (no chart library, nothing fetched from outside the server).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  { key: "reward", label: "reward", color: "#5f6368" },
  { key: "state_value", label: "state value V(s)", color: "#1a73e8" },
  { key: "advantage", label: "advantage", color: "#d01884" },
  { key: "value_target", label: "value target", color: "#188038" },
];
// Each estimator's knobs (service/estimators/registry.py); the standardisation flag's name.
const KNOBS = {
  td0: ["gamma", "average_rewards"],
  td1: ["gamma", "average_rewards"],
  td_lambda: ["gamma", "lmbda", "average_rewards"],
  gae: ["gamma", "lmbda", "average_gae"],
  vtrace: ["gamma", "lmbda", "rho_thresh", "c_thresh", "rho_pg_thresh", "average_adv"],
};
const AVERAGE_KNOB = {
  td0: "average_rewards", td1: "average_rewards", td_lambda: "average_rewards",
  gae: "average_gae", vtrace: "average_adv",
};
// Knobs that, left out, take the model's default (GET /v1/models: "defaults").
const MODEL_DEFAULT = {
  gamma: ["td0", "td1", "td_lambda", "gae", "vtrace"],
  lmbda: ["td_lambda", "gae"],
};
// Number inputs of the form, by knob.
const NUMBER_INPUTS = {
  gamma: "gamma", lmbda: "lmbda", rho_thresh: "rho-thresh", c_thresh: "c-thresh",
};
const DEFAULT_ESTIMATOR = "gae"; // the server's, when the body has no "estimator"
const $ = (id) => document.getElementById(id);
const models = {}; // name → GET /v1/models entry
let payloadEdited = false; // the user typed or pasted a body: the page never replaces it unasked

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// {"next": {"reward": r}} and {"next.reward": r} both → {"next.reward": r} (TensorDict keys).
function flatten(entries, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(entries || {})) {
    const name = prefix + key;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      flatten(value, name + ".", out);
    } else {
      out[name] = value;
    }
  }
  return out;
}

// Nested list [*B, T] (or [*B, T, 1]) → its `row`-th trajectory of `steps` numbers.
function row(nested, steps, index) {
  if (nested === undefined) return null;
  const flat = [nested].flat(Infinity);
  const start = index * steps;
  if (start + steps > flat.length) throw new Error(`row ${index} is out of range`);
  return flat.slice(start, start + steps).map((v) => (v === null ? NaN : Number(v)));
}

async function fetchJSON(url, options = {}) {
  // A server started with an auth token wants it on /v1/ routes.
  const token = $("token").value.trim();
  if (token) options.headers = { ...(options.headers || {}), authorization: `Bearer ${token}` };
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`${response.status} ${body.code || ""}: ${body.message || JSON.stringify(body)}`);
  }
  return body;
}

// The textarea's body, parsed; throws an Error whose message says what is wrong with it.
function readPayload() {
  let body;
  try {
    body = JSON.parse($("payload").value);
  } catch (error) {
    throw new Error(`payload: not valid JSON (${error.message})`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new Error("payload: expected a JSON object (a POST /v1/advantage body)");
  }
  return body;
}

function writePayload(body) {
  $("payload").value = JSON.stringify(body, null, 1);
}

// The body's estimator as an object: absent → the server's default, a name → {name}.
function estimatorOf(body) {
  const estimator = body.estimator;
  if (estimator === undefined || estimator === null) {
    return { name: DEFAULT_ESTIMATOR, implicit: true };
  }
  if (typeof estimator === "string") return { name: estimator };
  return { ...estimator };
}

function showEstimator(estimator) {
  const known = estimator.name in KNOBS;
  $("estimator").value = known ? estimator.name : "";
  for (const [knob, id] of Object.entries(NUMBER_INPUTS)) {
    const value = estimator[knob];
    const input = $(id);
    input.value = typeof value === "number" ? String(value) : "";
    input.dataset.perStep = Array.isArray(value) ? "true" : "";
    input.placeholder = Array.isArray(value)
      ? "per-step list"
      : knob in MODEL_DEFAULT ? "model default" : "1.0";
  }
  $("average").checked = known && estimator[AVERAGE_KNOB[estimator.name]] === true;
  syncKnobs();
}

function syncKnobs() {
  const name = $("estimator").value;
  for (const label of document.querySelectorAll("label[data-for]")) {
    label.hidden = !label.dataset.for.split(" ").includes(name);
  }
  $("average-name").textContent = AVERAGE_KNOB[name] || "average";
}

// The form's estimator, keeping what the form cannot show (per-step lists, rho_pg_thresh) from
// `previous` when the name stays the same; knobs the new estimator lacks are dropped.
function estimatorFromForm(previous) {
  const name = $("estimator").value;
  if (!(name in KNOBS)) return previous; // a name this page does not know: the body's stays
  const estimator = { name };
  const same = previous.name === name;
  for (const knob of KNOBS[name]) {
    if (knob === AVERAGE_KNOB[name]) {
      estimator[knob] = $("average").checked;
    } else if (knob in NUMBER_INPUTS && $(NUMBER_INPUTS[knob]).value !== "") {
      estimator[knob] = Number($(NUMBER_INPUTS[knob]).value);
    } else if (same && previous[knob] !== undefined && previous[knob] !== null) {
      const input = $(NUMBER_INPUTS[knob] || "");
      if (!input || input.dataset.perStep === "true") estimator[knob] = previous[knob];
    }
  }
  return estimator;
}

// A change of an estimator control rewrites the body's "estimator", visibly, in the textarea.
function onEstimatorControl(event) {
  if (event.target.id === "estimator") syncKnobs();
  let body;
  try {
    body = readPayload();
  } catch (error) {
    showError(`${error.message}; fix the body, then the estimator controls can edit it`);
    return;
  }
  showError("");
  body.estimator = estimatorFromForm(estimatorOf(body));
  writePayload(body);
}

// Typed or pasted text: the form follows the body's estimator and model.
function onPayloadInput() {
  payloadEdited = true;
  let body;
  try {
    body = readPayload();
  } catch {
    return; // half-typed; compute() says what is wrong
  }
  showBody(body);
}

// The form shows the body's estimator and model (the form never holds different ones).
function showBody(body) {
  showEstimator(estimatorOf(body));
  const name = typeof body.model_name === "string" ? body.model_name : "";
  $("model").value = name in models ? name : "";
}

async function loadModels() {
  try {
    const listed = await fetchJSON("/v1/models");
    for (const model of listed.models) {
      models[model.name] = model;
      const option = document.createElement("option");
      option.value = option.textContent = model.name;
      $("model").append(option);
    }
  } catch (error) {
    showError(`could not list models: ${error.message}`);
  }
}

// A generated trajectory for the chosen model, with the current body's estimator if it has one.
async function loadSample() {
  showError("");
  setState("loading");
  const params = new URLSearchParams({
    steps: $("steps").value || "24", seed: $("seed").value || "0", model_name: $("model").value,
  });
  let estimator;
  try {
    estimator = readPayload().estimator;
  } catch {
    estimator = undefined; // empty or broken: the sample's own (GAE)
  }
  try {
    const sample = await fetchJSON(`/debug/sample?${params}`);
    if (estimator !== undefined) sample.estimator = estimator;
    writePayload(sample);
    showBody(sample);
    document.body.dataset.sampleLoaded = "true";
    return true;
  } catch (error) {
    fail(error.message);
    return false;
  }
}

async function generateAndCompute() {
  if (await loadSample()) await compute();
}

// "td_lambda (gamma 0.9, lmbda 0.95 (model default), average_rewards false)".
function describeEstimator(estimator, modelName) {
  const name = estimator.name;
  const defaults = (models[modelName] || {}).defaults || {};
  const parts = [];
  for (const knob of KNOBS[name] || Object.keys(estimator).filter((k) => k !== "name")) {
    const value = estimator[knob];
    if (value === undefined || value === null) {
      if ((MODEL_DEFAULT[knob] || []).includes(name) && knob in defaults) {
        parts.push(`${knob} ${defaults[knob]} (model default)`);
      }
    } else {
      parts.push(`${knob} ${Array.isArray(value) ? "per-step" : JSON.stringify(value)}`);
    }
  }
  const label = estimator.implicit ? `${name}, the default estimator` : name;
  return parts.length ? `${label} (${parts.join(", ")})` : label;
}

function clearChart() {
  $("chart").replaceChildren();
  $("legend").replaceChildren();
  $("status").replaceChildren();
}

// An error replaces whatever was plotted: no chart from an earlier body stays on screen.
function fail(message) {
  clearChart();
  element("text", { class: "empty", x: 480, y: 190, "text-anchor": "middle" }, $("chart"))
    .textContent = "nothing plotted: the last computation failed (see the message above)";
  showError(message);
  setState("error");
}

async function compute() {
  showError("");
  let body;
  try {
    body = readPayload();
  } catch (error) {
    fail(error.message);
    return;
  }
  const estimator = estimatorOf(body);
  setState("computing");
  try {
    const result = await fetchJSON("/v1/advantage", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body), // the body as shown: nothing added, nothing overridden
    });
    plot(body, result);
    const t = result.timing;
    const ran = document.createElement("span");
    ran.className = "ran";
    ran.id = "ran";
    ran.textContent = `ran ${describeEstimator(estimator, result.model_name)}`;
    $("status").replaceChildren(
      ran,
      ` on model ${result.model_name} · parameter version ${result.parameter_version} · ` +
        `shape [${result.shape}] ${result.dtype} · decode ${t.decode_ms.toFixed(2)} ms, ` +
        `network ${t.network_ms.toFixed(2)} ms, estimator ${t.estimator_ms.toFixed(2)} ms, ` +
        `encode ${t.encode_ms.toFixed(2)} ms`,
    );
    document.body.dataset.estimator = estimator.name;
    setState("plotted");
  } catch (error) {
    fail(error.message);
  }
}

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.append(node);
  return node;
}

// One agent's series of a body with n_agents: per-agent tensors are [*B, T, n] (time before
// agents), flags [*B, T] (shared) or [*B, T, n]; `index` is the row of [*B].
function agentRow(nested, steps, agents, rows, index, agent) {
  if (nested === undefined) return null;
  const flat = [nested].flat(Infinity);
  if (flat.length !== rows * steps * agents) return row(nested, steps, index); // shared [*B, T]
  return Array.from({ length: steps }, (_, t) => flat[(index * steps + t) * agents + agent])
    .map((v) => (v === null ? NaN : Number(v)));
}

function plot(request, result) {
  const agents = Number(request.n_agents) || 0;
  const shape = agents ? result.shape.slice(0, -1) : result.shape;
  const steps = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const index = Math.min(Math.max(0, Number($("row").value) || 0), rows - 1);
  const agent = Math.min(Math.max(0, Number($("agent").value) || 0), Math.max(agents - 1, 0));
  const series = agents ? (nested) => agentRow(nested, steps, agents, rows, index, agent)
    : (nested) => row(nested, steps, index);
  const trajectory = flatten(request.trajectory);
  const pick = (...keys) => keys.map((k) => trajectory[k]).find((v) => v !== undefined);
  const data = {
    reward: series(pick("next.reward", "reward")),
    state_value: series(result.state_value ?? pick("state_value")),
    advantage: series(result.advantage),
    value_target: series(result.value_target),
  };
  const done = series(pick("next.done", "done")).map(Boolean);
  const terminatedRaw = pick("next.terminated", "terminated");
  const terminated = terminatedRaw === undefined ? done : series(terminatedRaw).map(Boolean);

  const svg = $("chart");
  svg.replaceChildren();
  const width = 960, height = 380, left = 56, right = 16, top = 22, bottom = 34;
  const values = Object.values(data).flatMap((series) => series || []).filter(Number.isFinite);
  let low = Math.min(0, ...values), high = Math.max(0, ...values);
  if (high - low < 1e-9) { low -= 1; high += 1; }
  const pad = (high - low) * 0.06;
  low -= pad; high += pad;
  const x = (t) => left + (steps === 1 ? 0.5 : t / (steps - 1)) * (width - left - right);
  const y = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);

  const axes = element("g", { class: "axis" }, svg);
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const v = low + ((high - low) * i) / ticks;
    element("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }, axes);
    element("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, axes).textContent =
      v.toFixed(2);
  }
  element("line", { x1: left, x2: width - right, y1: y(0), y2: y(0) }, axes);
  const every = Math.max(1, Math.ceil(steps / 16));
  for (let t = 0; t < steps; t += every) {
    element("text", { x: x(t), y: height - bottom + 16, "text-anchor": "middle" }, axes)
      .textContent = String(t);
  }
  element("text", { x: width - right, y: height - 4, "text-anchor": "end" }, axes).textContent =
    "time step t";

  // Episode ends: a dashed line at the step after which the episode ended.
  const markers = element("g", { class: "markers" }, svg);
  for (let t = 0; t < steps; t++) {
    if (!done[t]) continue;
    const kind = terminated[t] ? "terminal" : "truncated";
    const line = element("line", {
      class: `marker ${kind}`, "data-t": t, x1: x(t), x2: x(t), y1: top, y2: height - bottom,
    }, markers);
    element("title", {}, line).textContent = `t = ${t}: episode ${kind === "terminal" ? "terminated" : "truncated"}`;
    element("text", { x: x(t) + 3, y: top - 6 }, markers).textContent =
      kind === "terminal" ? "terminal" : "truncated";
  }

  for (const { key, label, color } of SERIES) {
    const series = data[key];
    if (!series) continue;
    const group = element("g", { class: "series", "data-series": key }, svg);
    let path = "";
    series.forEach((v, t) => {
      if (!Number.isFinite(v)) return;
      path += `${path && Number.isFinite(series[t - 1]) ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    });
    element("path", { d: path, fill: "none", stroke: color, "stroke-width": 1.8 }, group);
    series.forEach((v, t) => {
      if (!Number.isFinite(v)) return;
      const point = element("circle", {
        class: "point", "data-series": key, "data-t": t, "data-value": v,
        cx: x(t), cy: y(v), r: 2.8, fill: color,
      }, group);
      element("title", {}, point).textContent = `${label}, t = ${t}: ${v}`;
    });
  }

  const legend = $("legend");
  legend.replaceChildren();
  for (const { key, label, color } of SERIES) {
    if (!data[key]) continue;
    const item = document.createElement("span");
    item.style.setProperty("--c", color);
    item.textContent = label;
    legend.append(item);
  }
  for (const kind of ["terminal", "truncated"]) {
    const item = document.createElement("span");
    item.className = kind;
    item.textContent = kind === "terminal" ? "terminated (no bootstrap)" : "truncated (bootstrapped)";
    legend.append(item);
  }
}

$("load-sample").addEventListener("click", generateAndCompute);
$("compute").addEventListener("click", compute);
$("model").addEventListener("change", generateAndCompute);
$("payload").addEventListener("input", onPayloadInput);
for (const id of ["estimator", "gamma", "lmbda", "rho-thresh", "c-thresh", "average"]) {
  $(id).addEventListener("input", onEstimatorControl);
}
syncKnobs();

// On load: list the models, then generate a sample and plot it (no click needed), unless the
// user has already pasted a body of their own.
(async () => {
  await loadModels();
  if (!payloadEdited) await generateAndCompute();
  else setState("idle");
})();
