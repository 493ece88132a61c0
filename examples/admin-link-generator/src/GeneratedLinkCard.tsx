import { useRef, useState } from "react";
import type { GeneratedLink } from "../../node-backend/admin-api-types";
import { formatTime } from "./format";

const TYPE_LABELS: Readonly<Record<string, string>> = { magiclink: "Magic link", invite: "Invitation" };

/** The new link's secrets, shown once: the link and the code, each with a copy button (until it is revoked). */
export function GeneratedLinkCard({ link, revoked }: { link: GeneratedLink; revoked: boolean }) {
  const [copied, setCopied] = useState("");
  const linkField = useRef<HTMLInputElement>(null);

  async function copy(what: "link" | "code", text: string) {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(what === "link" ? "Link copied to the clipboard." : "Code copied to the clipboard.");
    } catch {
      // No clipboard access (an old browser, or permission refused): select it for Ctrl+C.
      if (what === "link") linkField.current?.select();
      setCopied("Copying was not allowed here: select the text and press Ctrl+C.");
    }
  }

  return (
    <section className="card" aria-labelledby="generated-heading">
      <h2 id="generated-heading">
        {TYPE_LABELS[link.type] ?? link.type} for {link.email}
      </h2>
      {revoked && (
        <p className="alert" role="alert">
          This link was revoked: it no longer works. Generate a new one if the person still needs it.
        </p>
      )}
      <p className="muted">
        Send it to the person yourself. It works once, until <strong>{formatTime(link.expiresAt)}</strong>; this is the only time it is
        shown.
      </p>
      <label htmlFor="action-link">Link</label>
      <div className="copy-row">
        <input id="action-link" readOnly value={link.actionLink} ref={linkField} onFocus={(e) => e.target.select()} />
        <button type="button" disabled={revoked} onClick={() => void copy("link", link.actionLink)}>
          Copy link
        </button>
      </div>
      <label htmlFor="email-otp">Code</label>
      <div className="copy-row">
        <output id="email-otp" className="code">
          {link.emailOtp}
        </output>
        <button type="button" className="secondary" disabled={revoked} onClick={() => void copy("code", link.emailOtp)}>
          Copy code
        </button>
      </div>
      <p className="status" role="status">
        {copied}
      </p>
    </section>
  );
}
