import {
  MongoBulkWriteError,
  MongoClientClosedError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";
import { StoreUnavailableError } from "../domain/store.js";

// Translation of driver errors: connectivity problems become
// StoreUnavailableError (UNAVAILABLE to callers, retryable); everything else
// stays an unexpected error (INTERNAL, logged, never shown).

/** Server error codes that mean "this server cannot serve right now". */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

export const DUPLICATE_KEY = 11000;

/**
 * Socket errors the driver sometimes lets through unwrapped (on Node 24 a
 * write to a connection the server closed surfaces as a bare EPIPE).
 */
const NETWORK_ERROR_CODES = new Set(["EPIPE", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTCONN"]);

export function isDuplicateKeyError(error: unknown): boolean {
  return error instanceof MongoServerError && error.code === DUPLICATE_KEY;
}

/**
 * For an unordered insertMany whose every failed document failed only on a
 * duplicate key (the documents already there win; the rest were inserted):
 * the indexes of the documents that were not inserted. Undefined for any
 * other error.
 */
export function duplicateKeyIndexes(error: unknown): Set<number> | undefined {
  if (!(error instanceof MongoBulkWriteError)) return undefined;
  const writeErrors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
  if (error.err !== undefined || writeErrors.length === 0 || !writeErrors.every((e) => e?.code === DUPLICATE_KEY)) return undefined;
  return new Set(writeErrors.map((e) => e.index));
}

/**
 * For an unordered insertMany that the server answered with per-document
 * write errors (the documents without one were inserted): why each failed
 * document was refused, by index. Undefined for any other error, where
 * nothing can be said about which documents were stored (a lost connection,
 * a write concern error).
 */
export function writeErrorsByIndex(error: unknown): Map<number, Error> | undefined {
  if (!(error instanceof MongoBulkWriteError) || error.err !== undefined || isUnavailableError(error)) return undefined;
  const writeErrors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
  if (writeErrors.length === 0 || !writeErrors.every((e) => typeof e?.index === "number")) return undefined;
  return new Map(writeErrors.map((e) => [e.index, new Error(`write error ${e.code}: ${e.errmsg ?? "refused"}`, { cause: e })]));
}

export function isUnavailableError(error: unknown): boolean {
  // The driver wraps some failures: a bulk write (insertMany) that loses its
  // connection throws a MongoBulkWriteError (a MongoServerError) that keeps
  // the network error as its `errorResponse`.
  const wrapped = (error as { errorResponse?: unknown; cause?: unknown } | null) ?? {};
  for (const inner of [wrapped.errorResponse, wrapped.cause]) {
    if (inner instanceof Error && inner !== error && isUnavailableError(inner)) return true;
  }
  const code = (error as { code?: unknown } | null)?.code;
  return (
    (typeof code === "string" && NETWORK_ERROR_CODES.has(code)) ||
    error instanceof MongoNetworkError ||
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNotConnectedError ||
    error instanceof MongoTopologyClosedError ||
    error instanceof MongoServerClosedError ||
    error instanceof MongoClientClosedError ||
    // No answer, or no free connection, in time.
    error instanceof MongoOperationTimeoutError ||
    (error as { name?: unknown } | null)?.name === "MongoWaitQueueTimeoutError" || // not exported by the driver
    (error instanceof MongoServerError && typeof error.code === "number" && UNAVAILABLE_CODES.has(error.code))
  );
}

/** Run a driver operation, translating connectivity failures. */
export async function translateErrors<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (isUnavailableError(error)) throw new StoreUnavailableError("database unavailable", { cause: error });
    throw error;
  }
}
