// The live charts, drawn by uPlot (vendor/uPlot.iife.min.js, loaded before this module as the
// global `uPlot`). Each chart plots a few values of the history's points against their time.

import { decimal, el } from "./dom.js";

const HEIGHT_PX = 170;
const LEVEL_COLOURS = { memory: "#7c3aed", disk: "#0891b2", redis: "#ea580c" };
const SPARE_COLOURS = ["#65a30d", "#db2777", "#475569"];

/** Seconds to milliseconds, keeping null (no request in the interval) as a gap. */
const ms = (seconds) => (seconds === null || seconds === undefined ? null : seconds * 1000);

/** The fixed charts: the cache chart's series depend on the configured levels (below). */
const CHARTS = [
  {
    id: "requests",
    title: "Requests per second",
    digits: 2,
    series: [
      { label: "requests/s", stroke: "#2563eb", value: (p) => p.requests_per_s },
      { label: "errors/s", stroke: "#dc2626", value: (p) => p.errors_per_s },
    ],
  },
  {
    id: "tokens",
    title: "Tokens and images per second",
    digits: 1,
    series: [
      { label: "tokens/s", stroke: "#16a34a", value: (p) => p.tokens_per_s },
      { label: "images/s", stroke: "#9333ea", value: (p) => p.images_per_s },
    ],
  },
  {
    id: "latency",
    title: "Request latency (ms)",
    digits: 1,
    series: [
      { label: "p50", stroke: "#0d9488", value: (p) => ms(p.latency_p50_s) },
      { label: "p99", stroke: "#f59e0b", value: (p) => ms(p.latency_p99_s) },
    ],
  },
  {
    id: "ttft",
    title: "Time to first token (ms)",
    digits: 1,
    series: [
      { label: "p50", stroke: "#0d9488", value: (p) => ms(p.ttft_p50_s) },
      { label: "p99", stroke: "#f59e0b", value: (p) => ms(p.ttft_p99_s) },
    ],
  },
];

/** The cache chart's spec for these level names: one hit-ratio series per level. */
function cacheChart(levels) {
  return {
    id: "cache",
    title: "Cache hit ratio",
    digits: 2,
    ratio: true,
    series: levels.map((level, i) => ({
      label: level,
      stroke: LEVEL_COLOURS[level] ?? SPARE_COLOURS[i % SPARE_COLOURS.length],
      value: (p) => p.cache_hit_ratio?.[level] ?? null,
    })),
  };
}

/** The time axis' labels: local 24-hour hh:mm, with seconds while the charts span under 5 minutes. */
function timeLabels(u, splits) {
  const short = u.scales.x.max - u.scales.x.min < 300;
  const parts = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (short) parts.second = "2-digit";
  return splits.map((t) => new Date(t * 1000).toLocaleTimeString([], parts));
}

/**
 * uPlot's points filter: where it does not draw every point (too dense), draw the values that
 * have no neighbour, which no line segment shows (one interval with requests between idle ones).
 */
function isolatedPoints(u, seriesIdx, show) {
  if (show) return null;
  const values = u.data[seriesIdx];
  const alone = [];
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== null && values[i - 1] == null && values[i + 1] == null) alone.push(i);
  }
  return alone.length > 0 ? alone : null;
}

/** One uPlot chart in its own card, resized with its card. */
class LiveChart {
  constructor(parent, spec) {
    this.spec = spec;
    this.plotNode = el("div", { class: "plot" });
    this.card = el("figure", { class: "chart", id: `chart-${spec.id}` }, el("figcaption", {}, spec.title), this.plotNode);
    parent.append(this.card);
    this.plot = new uPlot(this.options(), this.data([]), this.plotNode);
    // Resize on the next frame, not inside the observer's callback, so the chart's own change
    // of size cannot loop back into the observer ("ResizeObserver loop" errors).
    this.observer = new ResizeObserver(() => requestAnimationFrame(() => this.fit()));
    this.observer.observe(this.plotNode);
  }

  options() {
    const format = (v) => (v === null || v === undefined ? "–" : decimal(v, this.spec.digits));
    const ratio = this.spec.ratio === true;
    return {
      width: this.width(),
      height: HEIGHT_PX,
      cursor: { drag: { x: false, y: false } },
      scales: {
        y: { range: ratio ? [0, 1] : (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      axes: [{ values: timeLabels, space: 70, size: 30 }, { size: 56, values: (u, splits) => splits.map(format) }],
      series: [
        {},
        ...this.spec.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 2,
          points: { filter: isolatedPoints },
          value: (u, v) => format(v),
        })),
      ],
    };
  }

  /** uPlot's columns: the points' times, then each series' values. */
  data(points) {
    return [points.map((p) => p.t), ...this.spec.series.map((s) => points.map(s.value))];
  }

  width() {
    return Math.max(this.plotNode.clientWidth, 200);
  }

  fit() {
    const width = this.width();
    if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT_PX });
  }

  setPoints(points) {
    this.plot.setData(this.data(points));
  }

  destroy() {
    this.observer.disconnect();
    this.plot.destroy();
    this.card.remove();
  }
}

/** All the charts of the page, in `root` (created on the first update, once visible). */
export class Charts {
  constructor(root) {
    this.root = root;
    this.charts = null;
    this.cache = null;
    this.cacheLevels = "";
  }

  /** Draw `points` (oldest first); `levels`: the cache's level names (none: no cache chart). */
  update(points, levels) {
    if (this.charts === null) this.charts = CHARTS.map((spec) => new LiveChart(this.root, spec));
    const key = levels.join(",");
    if (key !== this.cacheLevels) {
      this.cache?.destroy();
      this.cache = levels.length > 0 ? new LiveChart(this.root, cacheChart(levels)) : null;
      this.cacheLevels = key;
    }
    for (const chart of this.charts) chart.setPoints(points);
    this.cache?.setPoints(points);
  }
}
