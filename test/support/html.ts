// A small HTML tag reader for tests: enough to list the elements of a page
// authlink writes, their attributes and the text inside <script> and <style>.
// Not a general HTML parser; it fails loudly on what it does not understand.

export interface HtmlElement {
  readonly tag: string;
  readonly attributes: ReadonlyMap<string, string>;
  /** For script and style: the raw text up to the closing tag. */
  readonly rawText?: string;
}

const TAG = /<(!--[\s\S]*?--|![^>]*|\/?[a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g;
const ATTRIBUTE = /([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g;
const RAW_TEXT_ELEMENTS = new Set(["script", "style"]);

export function parseHtmlElements(html: string): HtmlElement[] {
  const elements: HtmlElement[] = [];
  TAG.lastIndex = 0;
  for (let match = TAG.exec(html); match; match = TAG.exec(html)) {
    const name = match[1] ?? "";
    if (name.startsWith("!") || name.startsWith("/")) continue; // comment, doctype, closing tag
    const tag = name.toLowerCase();
    const attributes = new Map<string, string>();
    const rest = match[2] ?? "";
    ATTRIBUTE.lastIndex = 0;
    for (let a = ATTRIBUTE.exec(rest); a; a = ATTRIBUTE.exec(rest)) {
      const key = (a[1] ?? "").toLowerCase();
      if (attributes.has(key)) throw new Error(`duplicate attribute ${key} on <${tag}>`);
      attributes.set(key, decodeEntities(a[2] ?? a[3] ?? a[4] ?? ""));
    }
    if (RAW_TEXT_ELEMENTS.has(tag)) {
      const close = html.toLowerCase().indexOf(`</${tag}`, TAG.lastIndex);
      if (close < 0) throw new Error(`<${tag}> is not closed`);
      elements.push({ tag, attributes, rawText: html.slice(TAG.lastIndex, close) });
      TAG.lastIndex = close;
    } else {
      elements.push({ tag, attributes });
    }
  }
  return elements;
}

/** The text content between `<tag ...>` and `</tag>` of the first such element. */
export function textOf(html: string, tag: string): string | undefined {
  const match = new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, "i").exec(html);
  return match ? decodeEntities(match[1] ?? "") : undefined;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");
}
