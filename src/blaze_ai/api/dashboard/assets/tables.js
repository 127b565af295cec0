// The dashboard's tables: deployments, cache levels and usage per team. Each render replaces
// the table's body with rows built from the latest data.

import { bytes, count, decimal, el, percent } from "./dom.js";

/** A coloured label: `badge("open", "bad")`. */
function badge(text, tone) {
  return el("span", { class: `badge badge-${tone}` }, text);
}

const BREAKER_TONE = { closed: "good", half_open: "warn", open: "bad" };
const ENGINE_STATE_TONE = { ready: "good", starting: "warn", degraded: "warn", failed: "bad", stopped: "bad" };

/**
 * One row per deployment. A row whose breaker is open gets the class "breaker-open" (red) and
 * one half-open "breaker-half-open" (amber); every row carries data-deployment, data-model
 * and data-breaker (the breaker's state), for tests and for styling.
 */
export function renderDeployments(tbody, deployments, models) {
  const aliases = new Map(models.map((m) => [m.name, m.aliases]));
  const rows = deployments.map((d) => deploymentRow(d, aliases.get(d.model) ?? []));
  if (rows.length === 0) rows.push(emptyRow(14, "No deployment is configured."));
  tbody.replaceChildren(...rows);
}

function deploymentRow(d, aliases) {
  const breaker = d.breaker_state;
  const modelCell = el("td", {}, el("strong", {}, d.model));
  if (aliases.length > 0) modelCell.append(el("span", { class: "aliases" }, aliases.join(", ")));
  const cells = [
    modelCell,
    el("td", {}, d.name),
    el("td", {}, d.engine),
    el("td", {}, badge(d.engine_state, ENGINE_STATE_TONE[d.engine_state] ?? "neutral")),
    el("td", {}, d.healthy ? badge("healthy", "good") : badge("unhealthy", "bad")),
    el("td", { class: "breaker" }, badge(breaker.replace("_", "-"), BREAKER_TONE[breaker] ?? "neutral")),
    el("td", { class: "num" }, count(d.in_flight)),
    el("td", { class: "num" }, count(d.queue_depth)),
    el("td", { class: "num", title: `peak ${d.peak_batch_size}` }, count(d.batch_size)),
    el("td", { class: "num" }, decimal(d.latency_p50_ms, 1)),
    el("td", { class: "num" }, decimal(d.latency_p99_ms, 1)),
    el("td", { class: "num", title: `${d.failures} failed of ${d.requests}` }, percent(d.error_rate)),
    el("td", { class: "num" }, count(d.restarts)),
    el("td", { class: "last-error", title: d.last_error ?? "" }, d.last_error ?? ""),
  ];
  const rowClass = breaker === "open" ? "breaker-open" : breaker === "half_open" ? "breaker-half-open" : "";
  return el(
    "tr",
    { class: rowClass, dataset: { deployment: d.name, model: d.model, breaker } },
    ...cells,
  );
}

/** One row per cache level, and the answers per X-Blaze-Cache status in `outcomesNode`. */
export function renderCache(tbody, outcomesNode, cache) {
  const rows = cache.levels.map((level) => {
    const lookups = level.hits + level.misses;
    return el(
      "tr",
      { dataset: { level: level.level } },
      el("td", {}, level.level, level.up === false ? badge("down", "bad") : null),
      el("td", { class: "num" }, count(level.entries)),
      el("td", { class: "num" }, bytes(level.size_bytes)),
      el("td", { class: "num" }, bytes(level.max_bytes)),
      el("td", { class: "num" }, count(level.hits)),
      el("td", { class: "num" }, count(level.misses)),
      el("td", { class: "num" }, percent(lookups > 0 ? level.hits / lookups : null)),
      el("td", { class: "num" }, count(level.stores)),
      el("td", { class: "num" }, count(level.evictions)),
    );
  });
  tbody.replaceChildren(...rows);
  const outcomes = Object.entries(cache.outcomes ?? {});
  outcomesNode.textContent =
    outcomes.length === 0
      ? "No cacheable answer yet."
      : `Answers by X-Blaze-Cache: ${outcomes.map(([name, n]) => `${name} ${count(n)}`).join(", ")}`;
}

/** One row per team (the admin API's usage summary, grouped by team; the admin key's team
 * is ""). */
export function renderUsage(tbody, rows) {
  const out = rows.map((row) =>
    el(
      "tr",
      { dataset: { team: row.team ?? "" } },
      el("td", {}, row.team ? row.team : el("em", {}, "admin key (no team)")),
      el("td", { class: "num" }, count(row.requests)),
      el("td", { class: "num" }, count(row.prompt_tokens)),
      el("td", { class: "num" }, count(row.completion_tokens)),
      el("td", { class: "num" }, count(row.images)),
      el("td", { class: "num" }, count(row.errors)),
      el("td", { class: "num" }, decimal(row.avg_latency_ms, 1)),
    ),
  );
  if (out.length === 0) out.push(emptyRow(7, "No usage recorded yet."));
  tbody.replaceChildren(...out);
}

function emptyRow(columns, text) {
  return el("tr", { class: "empty" }, el("td", { colspan: columns }, text));
}
