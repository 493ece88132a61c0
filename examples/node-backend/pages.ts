import { escapeHtml } from "./email-template.js";
import type { Session } from "./session.js";

// The app's pages: plain HTML, one stylesheet and one small script (for
// /callback), all served by the app itself under a strict Content-Security-Policy.

const html = escapeHtml;

function layout(appName: string, title: string, body: string, script?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${html(title)} · ${html(appName)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/app.css">${script ? `<script src="${script}" defer></script>` : ""}</head>
<body><header><a href="/" class="brand">${html(appName)}</a></header><main>${body}</main></body></html>`;
}

export function homePage(appName: string, session: Session | undefined, isAdmin: boolean): string {
  if (session) {
    const since = new Date(session.issuedAt * 1000).toISOString().replace("T", " ").slice(0, 16);
    return layout(
      appName,
      "Home",
      `<h1>You are signed in</h1>
<p class="lead" id="who">Signed in as <strong>${html(session.email)}</strong></p>
<dl><dt>User id</dt><dd><code>${html(session.userId)}</code></dd>
<dt>Signed in with</dt><dd>${html(session.amr.join(", ") || "—")}</dd>
<dt>Since</dt><dd>${html(since)} UTC</dd></dl>
${isAdmin ? `<p><a href="/admin/">Open the admin link generator</a></p>` : ""}
<form method="post" action="/signout"><button type="submit" class="secondary">Sign out</button></form>`,
    );
  }
  return layout(
    appName,
    "Sign in",
    `<h1>Sign in to ${html(appName)}</h1>
<p class="lead">We will email you a sign-in link and a code. No password needed.</p>
<form method="post" action="/signin">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required>
<button type="submit">Send me a sign-in link</button>
</form>
<p class="muted"><a href="/signin/code">I have a code</a></p>`,
  );
}

export function checkEmailPage(appName: string, email: string): string {
  return layout(
    appName,
    "Check your email",
    `<h1>Check your email</h1>
<p class="lead">We sent a sign-in link and a code to <strong>${html(email)}</strong>.</p>
<p>Open the link on this device, or <a href="/signin/code">enter the code</a>. Nothing arrived after a few minutes? Check your spam folder, or <a href="/">ask again</a>.</p>`,
  );
}

export function codePage(appName: string, options: { email?: string; error?: string } = {}): string {
  return layout(
    appName,
    "Enter your code",
    `<h1>Enter your code</h1>
${options.error ? `<p class="error" role="alert">${html(options.error)}</p>` : ""}
<form method="post" action="/signin/code">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required value="${html(options.email ?? "")}">
<label for="code">Code from the email</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6,10}" required>
<button type="submit">Sign in</button>
</form>`,
  );
}

/** Where authlink's verify page sends the browser: its script hands the assertion to POST /session. */
export function callbackPage(appName: string): string {
  return layout(
    appName,
    "Signing you in",
    `<h1 id="status">Signing you in…</h1><p class="lead" id="detail"></p><p><a href="/">Back to the start</a></p>`,
    "/assets/callback.js",
  );
}

export function messagePage(appName: string, title: string, text: string): string {
  return layout(appName, title, `<h1>${html(title)}</h1><p class="lead">${html(text)}</p><p><a href="/">Back to the start</a></p>`);
}

/**
 * /callback's script: reads the assertion from the fragment (which never
 * reached any server), removes it from the address bar and the history, and
 * sends it to the backend in a POST body; then goes home.
 */
export const CALLBACK_SCRIPT = `"use strict";
async function signIn() {
  const status = document.getElementById("status");
  const detail = document.getElementById("detail");
  const assertion = new URLSearchParams(location.hash.slice(1)).get("authlink_assertion");
  history.replaceState(null, "", location.pathname);
  if (!assertion) {
    status.textContent = "Nothing to sign in with";
    detail.textContent = "Open the link from your email again, or ask for a new one.";
    return;
  }
  try {
    const response = await fetch("/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ assertion }),
    });
    if (response.ok) return location.replace("/");
    const answer = await response.json().catch(() => ({}));
    status.textContent = "We could not sign you in";
    detail.textContent = answer.error || "Ask for a new link.";
  } catch {
    status.textContent = "We could not reach the server";
    detail.textContent = "Check your connection and open the link again.";
  }
}
signIn();
// A link opened while this page is already showing changes only the fragment.
addEventListener("hashchange", signIn);
`;

export const APP_CSS = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#f6f7f9}
header{padding:14px 24px;background:#fff;border-bottom:1px solid #e3e6ea}
.brand{font-weight:700;color:#1f2328;text-decoration:none}
main{max-width:520px;margin:40px auto;padding:32px;background:#fff;border:1px solid #e3e6ea;border-radius:10px}
h1{margin:0 0 12px;font-size:24px}
.lead{font-size:17px}
.muted{color:#57606a;font-size:14px}
.error{color:#b42318;background:#fef3f2;border:1px solid #fecdca;padding:8px 12px;border-radius:6px}
label{display:block;margin:14px 0 4px;font-weight:600}
input{width:100%;padding:10px 12px;font:inherit;border:1px solid #c9ced6;border-radius:6px}
button{margin-top:16px;padding:10px 18px;font:inherit;font-weight:600;color:#fff;background:#2256d6;border:0;border-radius:6px;cursor:pointer}
button.secondary{color:#1f2328;background:#eef0f3}
a{color:#2256d6}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px}
dt{color:#57606a}dd{margin:0}code{word-break:break-all}
`;
