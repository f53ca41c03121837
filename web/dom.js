// Small DOM helpers: elements built with textContent only (never innerHTML), so no agent field
// can inject markup.

/**
 * h('td', { class: 'num', 'data-id': id }, 'text', child, ...) → element. Attributes with
 * value false/null/undefined are left out; children may be strings, nodes or arrays of them.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = v;
    else if (k === 'hidden') el.hidden = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** HH:MM:SS in the viewer's locale. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/** "HEALTH_NOT_SERVING" → "not serving"; "ROLE_LEADER" → "leader". */
export function enumText(v, prefix) {
  if (!v) return 'unspecified';
  return v.startsWith(prefix) ? v.slice(prefix.length).toLowerCase().replace(/_/g, ' ') : v;
}

/** An id with a line-break opportunity after each '/' and '.', for narrow columns. */
export function breakable(id) {
  const parts = String(id).split(/(?<=[/.])/);
  const out = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(document.createElement('wbr'));
    out.push(p);
  });
  return out;
}
