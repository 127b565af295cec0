// Small DOM and formatting helpers. Every string from the server reaches the page through
// textContent, an attribute or a dataset entry here: never through innerHTML.

/**
 * A new element: `el("td", { class: "num", title: "..." }, "text")`.
 * Children are nodes or strings (strings become text nodes); null and undefined are skipped.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The element with this id (throws when the page lacks it: a bug in index.html). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/** Show or hide an element (the `hidden` attribute). */
export function show(node, visible) {
  node.hidden = !visible;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** An integer with thousands separators, or "–" for null. */
export function count(value) {
  return value === null || value === undefined ? "–" : integer.format(value);
}

/** A number with at most `digits` decimals, or "–" for null. */
export function decimal(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** A 0-1 ratio as a percentage, or "–" for null. */
export function percent(value) {
  return value === null || value === undefined ? "–" : `${decimal(value * 100, 1)} %`;
}

/** A byte count as B, KiB, MiB or GiB, or "–" for null. */
export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let amount = value;
  let unit = 0;
  while (amount >= 1024 && unit < units.length - 1) {
    amount /= 1024;
    unit += 1;
  }
  return `${decimal(amount, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A Unix time in seconds as the local wall-clock time (hh:mm:ss). */
export function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}
