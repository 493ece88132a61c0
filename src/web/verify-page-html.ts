// The verify page's HTML document. Static but for the product name (from
// AUTHLINK_PAGE_TITLE, HTML-escaped) and the hashed asset paths; everything
// the person sees about their link is drawn by the script (src/web/page/).
// No inline script or style, so the CSP can forbid both.

export interface VerifyPageDocument {
  /** The product name: the document title, the card's label, and data-product for the script. */
  readonly title: string;
  readonly scriptPath: string;
  readonly scriptIntegrity: string;
  readonly stylePath: string;
  readonly styleIntegrity: string;
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text safe in element content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

export function renderVerifyPage(page: VerifyPageDocument): string {
  const title = escapeHtml(page.title);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>${title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${escapeHtml(page.stylePath)}" integrity="${page.styleIntegrity}">
<script type="module" src="${escapeHtml(page.scriptPath)}" integrity="${page.scriptIntegrity}"></script>
</head>
<body data-product="${title}">
<main class="card">
<p class="product">${title}</p>
<div id="app" aria-live="polite"></div>
<noscript>
<h1>JavaScript is needed</h1>
<p>This page confirms your link only when you press its button, and that button needs JavaScript. Turn JavaScript on for this page and open the link again, or use the code from the email in the app that asked for it.</p>
</noscript>
</main>
</body>
</html>
`;
}
