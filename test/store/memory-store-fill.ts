import type { AuditEvent } from "../../src/domain/audit-event.js";
import { tombstoneOf, type LinkRecord } from "../../src/domain/link.js";
import type { Store } from "../../src/domain/store.js";

// Fills a store the way traffic does, for the embedded store's growth tests:
// per link, its record, a code attempt, a rate-limit window and an audit
// event; every other link is then redeemed (tombstone, finished claim, link
// document deleted), as VerifyLink leaves them.

export interface Fill {
  /** How many links. */
  readonly count: number;
  /** When they are issued. */
  readonly at: Date;
  /** They expire this long after `at`, and are forgotten as long again later. */
  readonly lifetimeMs: number;
  /** Keeps the hashes, users and keys of one fill apart from another's. */
  readonly prefix: string;
}

export function fillLink(fill: Fill, i: number): LinkRecord {
  const expiresAt = new Date(fill.at.getTime() + fill.lifetimeMs);
  return {
    tokenHash: `${fill.prefix}-${i.toString(16).padStart(56, "0")}`,
    otpHash: "f".repeat(64),
    type: i % 3 === 0 ? "recovery" : "magiclink",
    userId: `${fill.prefix}-user-${i}`,
    email: `${fill.prefix}-${i}@example.com`,
    issueId: `${fill.prefix}-issue-${i}`,
    issuedAt: fill.at,
    expiresAt,
    retainUntil: new Date(expiresAt.getTime() + fill.lifetimeMs),
  };
}

export function fillEvent(fill: Fill, i: number): AuditEvent {
  return {
    at: fill.at,
    method: "GenerateLink",
    caller: "bench",
    clientAddress: "192.0.2.1",
    email: `${fill.prefix}-${i}@example.com`,
    hashedTokens: [],
    outcome: "ok",
    durationMs: 1,
  };
}

export async function fillStore(store: Store, fill: Fill): Promise<void> {
  for (let i = 0; i < fill.count; i++) {
    const link = fillLink(fill, i);
    await store.links.insert([link]);
    await store.links.markIssued([link.tokenHash]);
    await store.claims.claim(`otp:${link.tokenHash}:1`, link.expiresAt);
    await store.rateLimits.takeSlot(`${fill.prefix}-bucket-${i}`, fill.at, 1, link.expiresAt);
    await store.audit.append(fillEvent(fill, i), link.expiresAt);
    if (i % 2 === 0) {
      await store.tombstones.record([tombstoneOf(link, "used", fill.at)]);
      await store.claims.hold(`finished:${link.tokenHash}`, "request", link.retainUntil);
      await store.links.delete(link.tokenHash);
    }
  }
}

/** When everything `fill` stored is past its retention. */
export const fillForgottenAt = (fill: Fill): Date => new Date(fill.at.getTime() + 2 * fill.lifetimeMs);
