// Building the page's views. Text only ever goes in as text nodes: nothing
// that came from the address bar or a server answer is parsed as HTML.

type Child = Node | string | false | null | undefined;

export interface Props {
  readonly className?: string;
  readonly id?: string;
  /** Plain attributes (type, name, autocomplete, …); values are strings, never markup. */
  readonly attrs?: Readonly<Record<string, string>>;
  readonly onClick?: (event: Event) => void;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.className) element.className = props.className;
  if (props.id) element.id = props.id;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  if (props.onClick) element.addEventListener("click", props.onClick);
  for (const child of children) {
    if (child === false || child === null || child === undefined) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

/** Replace what the card shows, and move focus to the new heading for screen readers. */
export function show(container: HTMLElement, ...nodes: Node[]): void {
  container.replaceChildren(...nodes);
  const heading = container.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}
