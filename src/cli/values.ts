import type { JsonObject } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { parseDurationMs } from "../domain/durations.js";
import { UsageError } from "./failure.js";

// The values people type on the command line, parsed into what the contract
// takes: link types and states by their short names, durations ("90s", "1h"),
// JSON objects, times, and action links.

const LINK_TYPE_NAMES: Readonly<Record<string, LinkType>> = {
  signup: LinkType.SIGNUP,
  magiclink: LinkType.MAGICLINK,
  recovery: LinkType.RECOVERY,
  invite: LinkType.INVITE,
  email_change: LinkType.EMAIL_CHANGE,
};

const LINK_STATE_NAMES: Readonly<Record<string, LinkState>> = {
  valid: LinkState.VALID,
  expired: LinkState.EXPIRED,
  used: LinkState.USED,
  replaced: LinkState.REPLACED,
  revoked: LinkState.REVOKED,
  unknown: LinkState.UNKNOWN,
};

export const LINK_TYPE_CHOICES = Object.keys(LINK_TYPE_NAMES);
export const LINK_STATE_CHOICES = Object.keys(LINK_STATE_NAMES).filter((name) => name !== "unknown");

/** `magiclink`, `MAGICLINK`, `email-change` or `LINK_TYPE_EMAIL_CHANGE`; undefined when it names none. */
export function linkTypeOf(text: string): LinkType | undefined {
  const name = text.trim().toLowerCase().replace(/-/g, "_").replace(/^link_type_/, "");
  return LINK_TYPE_NAMES[name];
}

export function parseLinkType(text: string): LinkType {
  const type = linkTypeOf(text);
  if (type === undefined) throw new UsageError(`unknown link type "${text}" (use ${LINK_TYPE_CHOICES.join(", ")})`);
  return type;
}

export function parseLinkState(text: string): LinkState {
  const state = LINK_STATE_NAMES[text.trim().toLowerCase().replace(/^link_state_/, "")];
  if (state === undefined) throw new UsageError(`unknown link state "${text}" (use ${LINK_STATE_CHOICES.join(", ")})`);
  return state;
}

/** The short name of a link type or state, as people type it (`magiclink`, `email_change`, `valid`). */
export function shortName(enumName: string | undefined): string {
  return (enumName ?? "").replace(/^(LINK_TYPE_|LINK_STATE_)/, "").toLowerCase();
}

/** Milliseconds of "90s", "15m", "1h", "7d", "500ms" or a bare number of seconds. */
export function parseDuration(text: string, what: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0) throw new UsageError(`${what}: "${text}" is not a duration (e.g. 90s, 15m, 1h, 7d)`);
  return ms;
}

export function durationOf(ms: number): Duration {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

/** A JSON object given inline (`{"plan":"pro"}`) or from a file (`@meta.json`). */
export function parseJsonObject(text: string, what: string, readFile: (path: string) => string): JsonObject {
  const source = text.startsWith("@") ? readFile(text.slice(1)) : text;
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch {
    throw new UsageError(`${what}: not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${what}: must be a JSON object`);
  }
  return value as JsonObject;
}

/** An ISO 8601 time ("2025-01-31", "2025-01-31T12:00:00Z"), or a duration ago ("1h", "7d"). */
export function parseTime(text: string, what: string, now = new Date()): Timestamp {
  const ago = parseDurationMs(text);
  if (ago !== undefined) return timestampFromDate(new Date(now.getTime() - ago));
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${what}: "${text}" is not a time (ISO 8601, or a duration ago like 1h)`);
  return timestampFromDate(date);
}

export function isoOf(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString() : "";
}

export interface LinkCredential {
  readonly token: string;
  readonly type: LinkType | undefined;
}

/**
 * A link token as given: the token itself, or a whole action link
 * (`https://…/verify#token=…&type=magiclink`), whose type is then known too.
 */
export function linkCredentialOf(text: string): LinkCredential {
  if (!/^https?:\/\//i.test(text)) return { token: text.trim(), type: undefined };
  const url = new URL(text);
  const params = url.hash.length > 1 ? new URLSearchParams(url.hash.slice(1)) : url.searchParams;
  const token = params.get("token");
  if (!token) throw new UsageError("the link has no token parameter");
  const typeName = params.get("type");
  return { token, type: typeName ? linkTypeOf(typeName) : undefined };
}

/** A 64-character lower-case hex SHA-256, as `hashed_token`s are. */
export function parseHashedToken(text: string): string {
  const hash = text.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new UsageError(`"${text}" is not a hashed token (64 hex characters)`);
  return hash;
}
