import { useEffect, useState } from "react";
import type { LinkList, Revoked } from "../../node-backend/admin-api-types";
import { api, explain } from "./api";
import { formatTime } from "./format";

const STATE_LABELS: Readonly<Record<string, string>> = {
  valid: "Valid",
  expired: "Expired",
  used: "Used",
  replaced: "Replaced",
  revoked: "Revoked",
};
const TYPE_LABELS: Readonly<Record<string, string>> = {
  signup: "Sign-up",
  magiclink: "Magic link",
  recovery: "Recovery",
  invite: "Invitation",
  email_change: "Email change",
};

/** The address's links, newest first, with their state; outstanding ones can be revoked. */
export function LinkTable({ email, version, onRevoked }: { email: string; version: number; onRevoked: (hashedTokens: readonly string[]) => void }) {
  const [list, setList] = useState<LinkList | undefined>();
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [reload, setReload] = useState(0);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let current = true;
    setError("");
    api.links(email).then(
      (answer) => current && setList(answer),
      (failure: unknown) => current && setError(explain(failure)),
    );
    return () => {
      current = false;
    };
  }, [email, version, reload]);

  async function revoke(run: () => Promise<Revoked>) {
    setBusy(true);
    setNotice("");
    try {
      const { revokedCount, hashedTokens } = await run();
      setNotice(revokedCount === 1 ? "Revoked 1 link." : `Revoked ${revokedCount} links.`);
      onRevoked(hashedTokens);
      setReload((n) => n + 1);
    } catch (failure) {
      setError(explain(failure));
    } finally {
      setBusy(false);
    }
  }

  const outstanding = list?.links.filter((link) => link.state === "valid") ?? [];
  return (
    <section className="card" aria-labelledby="links-heading">
      <div className="card-head">
        <h2 id="links-heading">Links for {email}</h2>
        <button type="button" className="danger" disabled={busy || outstanding.length === 0} onClick={() => void revoke(() => api.revokeAll(email))}>
          Revoke all outstanding
        </button>
      </div>
      {error && (
        <p className="alert" role="alert">
          {error}
        </p>
      )}
      <p className="status" role="status">
        {notice}
      </p>
      {list && list.links.length === 0 && <p className="muted">No links for this address.</p>}
      {list && list.links.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Type</th>
              <th>State</th>
              <th>Issued</th>
              <th>Expires</th>
              <th>Link id</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.links.map((link) => (
              <tr key={link.hashedToken} data-hashed-token={link.hashedToken}>
                <td>{TYPE_LABELS[link.type] ?? link.type}</td>
                <td>
                  <span className={`state state-${link.state}`}>{STATE_LABELS[link.state] ?? link.state}</span>
                  {link.stateChangedAt && <span className="muted small"> {formatTime(link.stateChangedAt)}</span>}
                </td>
                <td>{formatTime(link.issuedAt)}</td>
                <td>{formatTime(link.expiresAt)}</td>
                <td>
                  <code title={link.hashedToken}>{link.hashedToken.slice(0, 10)}…</code>
                </td>
                <td>
                  {link.state === "valid" && (
                    <button type="button" className="danger small" disabled={busy} onClick={() => void revoke(() => api.revokeLinks([link.hashedToken]))}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list?.more && <p className="muted">Only the 50 newest links are shown.</p>}
    </section>
  );
}
