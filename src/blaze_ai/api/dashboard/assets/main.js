// The dashboard's entry point: polls /admin/dashboard (every interval_s, only the points newer
// than the last one it has), renders the tables and charts, and asks for the admin key when a
// call is refused for want of it.

import { AuthNeeded, forgetAdminKey, getJSON, onAuthNeeded, postJSON, setAdminKey } from "./api.js";
import { Charts } from "./charts.js";
import { byId, clock, count, show } from "./dom.js";
import { ChatPlayground, ImagePlayground } from "./playground.js";
import { renderCache, renderDeployments, renderUsage } from "./tables.js";

const USAGE_EVERY_MS = 10_000;
const DEFAULT_WINDOW_S = 900; // the server's metrics.history_window_s, when it does not say

/**
 * Run `task` now, then again `everyMs` after each run ends (never two runs at once) until
 * stopped. `now()` runs it at once, or right after the run in progress.
 */
class Loop {
  constructor(task, everyMs, onError) {
    this.task = task;
    this.everyMs = everyMs;
    this.onError = onError;
    this.timer = undefined;
    this.running = false;
    this.again = false;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.now();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async now() {
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = true;
    try {
      await this.task();
    } catch (error) {
      if (!(error instanceof AuthNeeded)) this.onError(error);
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.now();
    } else {
      this.timer = setTimeout(() => this.now(), this.everyMs);
    }
  }
}

const page = {
  app: byId("app"),
  keyPanel: byId("key-panel"),
  keyForm: byId("key-form"),
  keyInput: byId("admin-key"),
  keyMessage: byId("key-message"),
  forgetKey: byId("forget-key"),
  status: byId("status"),
  deployments: byId("deployments").tBodies[0],
  cacheOn: byId("cache-on"),
  cacheOff: byId("cache-off"),
  cacheLevels: byId("cache-levels").tBodies[0],
  cacheOutcomes: byId("cache-outcomes"),
  clearCache: byId("clear-cache"),
  cacheMessage: byId("cache-message"),
  usageSection: byId("usage-section"),
  usage: byId("usage").tBodies[0],
  chartsTitle: byId("charts-title"),
};

const history = { points: [], lastT: null };
const charts = new Charts(byId("charts"));
const chat = new ChatPlayground();
const images = new ImagePlayground();
const dashboard = new Loop(refreshDashboard, 2000, (error) => setStatus(`Cannot reach Blaze: ${error.message}`, "error"));
const usage = new Loop(refreshUsage, USAGE_EVERY_MS, (error) => setStatus(`Usage: ${error.message}`, "error"));

/** "15 minutes", "hour", "90 seconds": a window's length, for the charts' title. */
function duration(seconds) {
  let [amount, unit] = [seconds, "second"];
  if (seconds % 3600 === 0) [amount, unit] = [seconds / 3600, "hour"];
  else if (seconds % 60 === 0) [amount, unit] = [seconds / 60, "minute"];
  return amount === 1 ? unit : `${amount} ${unit}s`;
}

function setStatus(text, state) {
  page.status.textContent = text;
  page.status.dataset.state = state;
}

/** One poll: the new points, and everything else as it is now. */
async function refreshDashboard() {
  const since = history.lastT === null ? "" : `?since=${history.lastT}`;
  const data = await getJSON(`admin/dashboard${since}`);
  dashboard.everyMs = data.interval_s * 1000;
  keepPoints(data);
  render(data);
}

/** Append the new points; drop those older than the server's window. */
function keepPoints(data) {
  const last = history.lastT;
  history.points.push(...data.points.filter((p) => last === null || p.t > last));
  if (history.points.length > 0) history.lastT = history.points.at(-1).t;
  const oldest = data.now - (data.window_s ?? DEFAULT_WINDOW_S);
  const firstKept = history.points.findIndex((p) => p.t >= oldest);
  history.points.splice(0, firstKept === -1 ? history.points.length : firstKept);
}

function render(data) {
  show(page.keyPanel, false);
  show(page.app, true);
  show(page.forgetKey, data.auth);
  renderDeployments(page.deployments, data.deployments, data.models);
  show(page.cacheOn, data.cache.enabled);
  show(page.cacheOff, !data.cache.enabled);
  if (data.cache.enabled) renderCache(page.cacheLevels, page.cacheOutcomes, data.cache);
  const levels = data.cache.enabled ? data.cache.levels.map((l) => l.level) : [];
  page.chartsTitle.textContent = `Last ${duration(data.window_s ?? DEFAULT_WINDOW_S)}`;
  charts.update(history.points, levels);
  const named = (kind) => data.models.filter((m) => m.kind === kind).map((m) => m.name);
  chat.setModels(named("text"));
  images.setModels(named("images"));
  show(page.usageSection, data.auth);
  if (data.auth) usage.start();
  else usage.stop();
  setStatus(`Updated ${clock(data.now)}`, "ok");
}

async function refreshUsage() {
  const answer = await getJSON("admin/usage?group_by=team");
  renderUsage(page.usage, answer.data);
}

/** Stop polling and show the key form, with why it is shown. */
function askForKey(message) {
  dashboard.stop();
  usage.stop();
  show(page.app, false);
  show(page.keyPanel, true);
  page.keyMessage.textContent = message;
  setStatus("Waiting for the admin key", "auth");
  page.keyInput.focus();
}

onAuthNeeded((message, keySent) => {
  askForKey(keySent ? `The key was refused: ${message}` : "Auth is on: enter the admin key.");
});

page.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = page.keyInput.value.trim();
  if (!key) return;
  setAdminKey(key);
  page.keyInput.value = "";
  page.keyMessage.textContent = "Checking…";
  dashboard.start();
});

page.forgetKey.addEventListener("click", () => {
  forgetAdminKey();
  askForKey("The key was forgotten: enter it again to go on.");
});

page.clearCache.addEventListener("click", async () => {
  page.clearCache.disabled = true;
  page.cacheMessage.textContent = "Clearing…";
  try {
    const answer = await postJSON("admin/cache/clear", {});
    const levels = Object.entries(answer.cleared);
    const total = levels.reduce((sum, [, n]) => sum + (n ?? 0), 0);
    const each = levels.map(([level, n]) => `${level} ${n === null ? "failed" : count(n)}`).join(", ");
    page.cacheMessage.textContent = `Cleared ${count(total)} entries (${each}).`;
    dashboard.now();
  } catch (error) {
    page.cacheMessage.textContent = `Error: ${error.message}`;
  } finally {
    page.clearCache.disabled = false;
  }
});

dashboard.start();
