// The built-in stream page (templates/django_rtcstream/stream_page.html).
//
// The template renders the media elements, the form (from the stream's input
// declarations) and the panels; this script wires them to an RTCStreamClient.
// A fresh client is made for every Start, so nothing leaks from one session
// into the next. `window.rtcstreamPage.client` is the current client, for
// debugging from the browser console.

import { RTCStreamClient, audioLevel } from "./rtcstream.js";

const config = JSON.parse(document.getElementById("rtcstream-config").textContent);
const root = document.getElementById("rtcstream-page");
const $ = (id) => document.getElementById(id);
const button = $("rtc-start");
const stateText = $("rtc-state");
const errorBox = $("rtc-error");
const noticeBox = $("rtc-notice");
const form = $("rtc-inputs");

const STATE_WORDS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  closing: "Stopping…",
  closed: "Stopped",
  failed: "Not connected",
};

const page = { client: null, audioContext: null, meters: [] };
window.rtcstreamPage = page;

function showError(error) {
  if (!error) {
    errorBox.hidden = true;
    errorBox.textContent = "";
    return;
  }
  errorBox.textContent = error.message || String(error);
  errorBox.dataset.code = error.code || "error";
  errorBox.hidden = false;
}

function showNotice(text) {
  noticeBox.textContent = text || "";
  noticeBox.hidden = !text;
}

function setState(state) {
  root.dataset.state = state;
  stateText.textContent = STATE_WORDS[state] || state;
  const busy = state === "connecting" || state === "connected" || state === "closing";
  button.textContent = busy ? "Stop" : "Start";
  button.classList.toggle("rtc-button-stop", busy);
  button.disabled = state === "closing";
  const waiting = state === "connecting" ? "Connecting…" : "Press Start";
  for (const placeholder of root.querySelectorAll("[data-placeholder='remote']")) placeholder.textContent = waiting;
}

// -- the form ------------------------------------------------------------------

function fieldValue(field) {
  const kind = field.dataset.kind;
  const control = field.querySelector("input, select");
  if (!control) return undefined;
  if (kind === "slider" || kind === "number") {
    if (control.value === "") return undefined;
    return Number(control.value);
  }
  if (kind === "checkbox") return control.checked;
  if (kind === "dropdown" && control.multiple) {
    return Array.from(control.selectedOptions, (option) => option.value);
  }
  return control.value;
}

function formValues() {
  const values = {};
  if (!form) return values;
  for (const field of form.querySelectorAll(".rtc-field")) {
    const value = fieldValue(field);
    if (value !== undefined) values[field.dataset.name] = value;
  }
  return values;
}

function fieldError(field, message) {
  const slot = field.querySelector(".rtc-field-error");
  slot.textContent = message || "";
  slot.hidden = !message;
  field.classList.toggle("rtc-field-invalid", Boolean(message));
}

const timers = new Map();

function sendField(field, delay) {
  const name = field.dataset.name;
  clearTimeout(timers.get(name));
  timers.set(name, setTimeout(async () => {
    const value = fieldValue(field);
    if (value === undefined || !page.client) return;
    try {
      await page.client.setInput({ [name]: value });
      fieldError(field, "");
    } catch (error) {
      fieldError(field, error.message);
    }
  }, delay));
}

if (form) {
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", (event) => {
    const field = event.target.closest(".rtc-field");
    if (!field) return;
    const shown = field.querySelector("output");
    if (shown) shown.textContent = event.target.value;
    if (field.dataset.kind === "slider" || field.dataset.kind === "textbox") sendField(field, 120);
  });
  form.addEventListener("change", (event) => {
    const field = event.target.closest(".rtc-field");
    if (field) sendField(field, 0);
  });
}

// -- outputs and messages ------------------------------------------------------------

function formatValue(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
  if (typeof value === "string") return value;
  const text = JSON.stringify(value);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

let outputCount = 0;

function showOutput(values) {
  outputCount += 1;
  const list = $("rtc-outputs-list");
  const items = Array.isArray(values) ? values : [values];
  list.replaceChildren();
  items.forEach((value, index) => {
    const term = document.createElement("dt");
    term.textContent = (config.outputLabels && config.outputLabels[index]) || `Output ${index + 1}`;
    const detail = document.createElement("dd");
    detail.textContent = formatValue(value);
    list.append(term, detail);
  });
  $("rtc-outputs-empty").hidden = true;
  const meta = $("rtc-outputs-meta");
  meta.hidden = false;
  meta.textContent = `${outputCount} update${outputCount === 1 ? "" : "s"}, latest at ${new Date().toLocaleTimeString()}`;
}

function addMessage(type, data) {
  const box = $("rtc-messages");
  const list = $("rtc-messages-list");
  const item = document.createElement("li");
  const tag = document.createElement("span");
  tag.className = `rtc-tag rtc-tag-${type}`;
  tag.textContent = type === "warning" ? "Warning" : "Log";
  item.append(tag, ` ${formatValue(data)}`);
  list.prepend(item);
  while (list.children.length > 6) list.lastElementChild.remove();
  box.hidden = false;
}

// -- turn-taking strip ----------------------------------------------------------------
// Voice agents (ReplyOnPause, ReplyOnStopWords) send FastRTC's `log` messages and a
// `stopword` message, plus a `turn` message per turn event with its figures. The strip
// says what the agent is doing and lists the latest events. It stays hidden for
// streams that send none of these.

const TURN_STATES = {
  started_talking: ["talking", "Talking"],
  pause_detected: ["thinking", "Thinking"],
  response_starting: ["speaking", "Speaking"],
  stopword: ["heard", "Stop word heard"],
  interrupted: ["interrupted", "Interrupted"],
  reply_end: ["listening", "Listening"],
};

function turnText(type, data) {
  if (type === "stopword") return "stop word heard";
  if (type === "log") return data.replace(/_/g, " ");
  const parts = [`turn ${data.turn}: ${String(data.event).replace(/_/g, " ")} at ${formatValue(data.at)} s`];
  if (typeof data.latency_s === "number") parts.push(`${formatValue(data.latency_s)} s after speech`);
  if (data.phrase) parts.push(`"${data.phrase}"`);
  if (data.reason && data.reason !== "pause") parts.push(data.reason);
  return parts.join(", ");
}

function showTurnEvent(type, data) {
  const box = $("rtc-turns");
  if (!box) return;
  const key = type === "turn" ? data && data.event : type === "log" ? data : type;
  if (type === "log" && !TURN_STATES[key]) return; // other log lines go to the messages panel
  if (type === "turn" && (!data || typeof data !== "object")) return;
  const state = TURN_STATES[key];
  const chip = $("rtc-turn-state");
  if (state) {
    chip.dataset.turnState = state[0];
    chip.textContent = state[1];
  }
  const list = $("rtc-turns-list");
  const item = document.createElement("li");
  item.dataset.event = key;
  item.textContent = turnText(type, data);
  list.prepend(item);
  while (list.children.length > 8) list.lastElementChild.remove();
  box.hidden = false;
}

function watchTurns(client) {
  $("rtc-turns-list")?.replaceChildren();
  for (const type of ["log", "stopword", "turn"]) {
    client.on(type, (data) => {
      if (page.client === client) showTurnEvent(type, data);
    });
  }
}

// -- audio level meters ---------------------------------------------------------------

function startMeter(id, stream) {
  const element = $(id);
  if (!element || !stream || stream.getAudioTracks().length === 0) return;
  const meter = audioLevel(stream, { context: page.audioContext });
  const fill = element.querySelector(".rtc-meter-fill");
  const timer = setInterval(() => {
    const level = meter.level();
    // RMS to a 0..1 display scale: -60 dBFS is empty, 0 dBFS full.
    const db = 20 * Math.log10(Math.max(level, 1e-6));
    const shown = Math.min(1, Math.max(0, (db + 60) / 60));
    element.dataset.level = level.toFixed(4);
    fill.style.width = `${(shown * 100).toFixed(1)}%`;
  }, 60);
  page.meters.push(() => {
    clearInterval(timer);
    meter.close();
    element.dataset.level = "0";
    fill.style.width = "0%";
  });
}

function stopMeters() {
  for (const stop of page.meters.splice(0)) stop();
}

// -- the server's stats: small live charts under the media ------------------------------
//
// The server sends a "stats" message over the data channel every STATS_INTERVAL
// (asked for with serverStats); each chart keeps the last STATS_POINTS samples.

const STATS_POINTS = 60;
const SVG = "http://www.w3.org/2000/svg";
const CHARTS = {
  rtt: { unit: "ms", lines: [["rtt_ms", 1]] },
  bitrate: { unit: "kbit/s", lines: [["bitrate_in_kbps", 1], ["bitrate_out_kbps", 1]] },
  loss: { unit: "%", lines: [["loss_in", 100], ["loss_out", 100]] },
};
const LINE_COLORS = ["#2563eb", "#dc2626"];
const statsHistory = [];

function shortNumber(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 1) return value.toFixed(1);
  return value.toPrecision(2);
}

function drawChart(figure, chart) {
  const svg = figure.querySelector("svg");
  const series = chart.lines.map(([name, scale]) => statsHistory.map((s) => (s[name] == null ? null : s[name] * scale)));
  const values = series.flat().filter((v) => v != null);
  const top = Math.max(...values, 0) || 1;
  const step = 240 / Math.max(1, STATS_POINTS - 1);
  const offset = STATS_POINTS - statsHistory.length;
  svg.replaceChildren();
  series.forEach((points, index) => {
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push(run[0]);
      if (run.length) {
        const line = document.createElementNS(SVG, "polyline");
        line.setAttribute("points", run.join(" "));
        line.setAttribute("fill", "none");
        line.setAttribute("stroke", LINE_COLORS[index % LINE_COLORS.length]);
        line.setAttribute("stroke-width", "1.5");
        line.setAttribute("vector-effect", "non-scaling-stroke");
        svg.append(line);
      }
      run = [];
    };
    points.forEach((value, i) => {
      if (value == null) return flush();
      run.push(`${((offset + i) * step).toFixed(1)},${(58 - (value / top) * 56).toFixed(1)}`);
    });
    flush();
  });
  const latest = series.map((points) => points[points.length - 1]);
  const words = latest.map((v) => (v == null ? "–" : shortNumber(v)));
  figure.querySelector("[data-value]").textContent = latest.every((v) => v == null)
    ? "not available"
    : `${words.join(" / ")} ${chart.unit}`;
  figure.dataset.points = String(statsHistory.length);
}

function showStats(sample) {
  if (!sample || typeof sample !== "object") return;
  statsHistory.push(sample);
  while (statsHistory.length > STATS_POINTS) statsHistory.shift();
  const box = $("rtc-stats");
  if (!box) return;
  box.hidden = false;
  for (const figure of box.querySelectorAll("[data-chart]")) {
    const chart = CHARTS[figure.dataset.chart];
    if (chart) drawChart(figure, chart);
  }
}

// -- start and stop -------------------------------------------------------------------

async function start() {
  showError(null);
  showNotice("");
  if (config.modality !== "video" && !page.audioContext) {
    // Created inside the click so the browser lets it run (autoplay policy).
    page.audioContext = new (window.AudioContext || window.webkitAudioContext)();
  }
  if (page.audioContext && page.audioContext.state === "suspended") page.audioContext.resume().catch(() => {});
  const client = new RTCStreamClient(config.url, {
    localVideo: $("rtc-local-video"),
    remoteVideo: $("rtc-remote-video"),
    remoteAudio: $("rtc-remote-audio"),
    inputs: formValues(),
    serverStats: Boolean(config.serverStats),
  });
  statsHistory.length = 0;
  page.client = client;
  client.on("state", (state) => {
    if (page.client === client) setState(state);
    if (state === "closed" || state === "failed") stopMeters();
  });
  client.on("error", (error) => {
    if (page.client === client) showError(error);
  });
  client.on("notice", (text) => showNotice(text));
  client.on("reconnecting", () => showNotice("This server is restarting: moving your session to another one…"));
  client.on("reconnected", () => showNotice(""));
  client.on("warning", (data) => addMessage("warning", data));
  client.on("log", (data) => addMessage("log", data));
  client.on("end_stream", (data) => {
    if (data && data !== "time_limit" && data !== "handler_finished") showNotice(`The stream says: ${data}`);
  });
  client.on("track", () => {
    // Meters start once media is there; the remote one once per track set.
    stopMeters();
    startMeter("rtc-meter-local", client.localStream);
    startMeter("rtc-meter-remote", client.remoteStream);
  });
  client.onOutput(showOutput);
  client.on("stats", (sample) => {
    if (page.client === client) showStats(sample);
  });
  watchTurns(client);
  try {
    await client.start();
    if (client.state === "connected" && client.localStream && !client.remoteStream.getTracks().length) {
      startMeter("rtc-meter-local", client.localStream); // send-only streams have no remote track
    }
  } catch (error) {
    // Already shown through the "error" event.
  }
}

async function stop() {
  const client = page.client;
  if (client) await client.close();
  stopMeters();
}

button.addEventListener("click", () => {
  const state = root.dataset.state;
  if (state === "connecting" || state === "connected") stop();
  else start();
});

window.addEventListener("pagehide", () => {
  if (page.client) page.client.close();
});

setState("idle");
