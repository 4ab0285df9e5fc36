// Small DOM helpers: elements built in code (no HTML strings, so nothing the server returns is ever markup),
// and times shown relative with the exact time on hover.

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | ((event: Event) => void)> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") {
      node.addEventListener(name, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false) {
      node.setAttribute(name, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child);
    }
  }
  return node;
}

export function button(text: string, onClick: () => void, kind = ""): HTMLButtonElement {
  return el("button", { type: "button", class: kind, click: () => onClick() }, text);
}

/** A labelled input; its `id` ties the label to it, which is how tests and screen readers find it. */
export function field(label: string, input: HTMLElement, id: string): HTMLElement {
  input.id = id;
  return el("div", {}, el("label", { for: id }, label), input, el("div", { class: "error", id: `${id}-error` }));
}

/** `seconds` since the epoch as "3 min ago", with the exact time in the title. */
export function when(ts: { seconds: bigint } | undefined): HTMLElement {
  if (!ts) {
    return el("span", {}, "—");
  }
  const date = new Date(Number(ts.seconds) * 1000);
  const ago = (Date.now() - date.getTime()) / 1000;
  const past = ago >= 0;
  const span = Math.abs(ago);
  const text =
    span < 60 ? "just now" : span < 3600 ? `${Math.round(span / 60)} min` : span < 86400 ? `${Math.round(span / 3600)} h` : `${Math.round(span / 86400)} d`;
  const shown = text === "just now" ? text : past ? `${text} ago` : `in ${text}`;
  return el("time", { datetime: date.toISOString(), title: date.toLocaleString() }, shown);
}

export function render(...children: Child[]): void {
  const app = document.getElementById("app");
  if (app) {
    app.replaceChildren(...children.filter((c): c is Node | string => !!c));
  }
}
