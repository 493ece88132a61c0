import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import type { GeneratedLink, GeneratedType, WhoAmI } from "../../node-backend/admin-api-types";
import { api, explain } from "./api";
import { GeneratedLinkCard } from "./GeneratedLinkCard";
import { LinkTable } from "./LinkTable";

const TYPES: readonly { value: GeneratedType; label: string; hint: string }[] = [
  { value: "magiclink", label: "Magic link", hint: "Signs the person in (creates the account if there is none)." },
  { value: "invite", label: "Invitation", hint: "Invites a new person; fails for an address that already has a confirmed account." },
];

export function App() {
  const [me, setMe] = useState<WhoAmI | undefined>();
  const [failure, setFailure] = useState("");

  useEffect(() => {
    api.me().then(setMe, (error: unknown) => setFailure(explain(error)));
  }, []);

  if (failure) return <Shell><p className="alert" role="alert">{failure}</p></Shell>;
  if (!me) return <Shell><p className="muted">Loading…</p></Shell>;
  if (!me.admin) {
    return (
      <Shell>
        <p className="alert" role="alert">
          {me.email ? `${me.email} is not an administrator.` : "You are not signed in."} <a href="/">Sign in as an administrator</a> to
          generate links.
        </p>
      </Shell>
    );
  }
  return (
    <Shell who={me.email}>
      <Generator />
    </Shell>
  );
}

function Shell({ who, children }: { who?: string; children: ReactNode }) {
  return (
    <>
      <header>
        <strong>Admin link generator</strong>
        {who && <span className="muted">Signed in as {who}</span>}
      </header>
      <main>{children}</main>
    </>
  );
}

function Generator() {
  const [type, setType] = useState<GeneratedType>("magiclink");
  const [email, setEmail] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [generated, setGenerated] = useState<GeneratedLink | undefined>();
  const [generatedRevoked, setGeneratedRevoked] = useState(false);
  /** The address whose links are listed, and a counter that reloads the list. */
  const [listed, setListed] = useState<{ email: string; version: number } | undefined>();

  const showLinks = (address: string) => setListed((previous) => ({ email: address, version: (previous?.version ?? 0) + 1 }));

  async function generate(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError("");
    setGenerated(undefined);
    setGeneratedRevoked(false);
    try {
      const link = await api.generate(type, email);
      setGenerated(link);
      showLinks(link.email);
    } catch (failure) {
      setError(explain(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <section className="card">
        <h1>Generate a link</h1>
        <form onSubmit={generate}>
          <fieldset>
            <legend>Type</legend>
            {TYPES.map((t) => (
              <label key={t.value} className="choice">
                <input type="radio" name="type" value={t.value} checked={type === t.value} onChange={() => setType(t.value)} />
                <span>
                  <strong>{t.label}</strong> <span className="muted">{t.hint}</span>
                </span>
              </label>
            ))}
          </fieldset>
          <label htmlFor="email">Email address</label>
          <input id="email" type="email" required value={email} onChange={(e) => setEmail(e.target.value)} placeholder="person@example.com" />
          <div className="actions">
            <button type="submit" disabled={busy}>
              {busy ? "Generating…" : "Generate link"}
            </button>
            <button type="button" className="secondary" disabled={email.trim() === ""} onClick={() => showLinks(email.trim())}>
              Show links for this address
            </button>
          </div>
        </form>
        {error && (
          <p className="alert" role="alert">
            {error}
          </p>
        )}
      </section>
      {generated && <GeneratedLinkCard link={generated} revoked={generatedRevoked} />}
      {listed && (
        <LinkTable
          key={listed.email}
          email={listed.email}
          version={listed.version}
          onRevoked={(hashedTokens) => {
            if (generated && hashedTokens.includes(generated.hashedToken)) setGeneratedRevoked(true);
          }}
        />
      )}
    </>
  );
}
