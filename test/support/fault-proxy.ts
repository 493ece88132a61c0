import net from "node:net";

// A TCP proxy between authlink and its database that reads the MongoDB wire
// protocol (every message starts with its int32 little-endian length, then
// requestID, responseTo and opCode), so that a test can take the database
// away at an exact point of a call: at the n-th data command authlink sends.
//
//   arm({ at, mode })  counting starts again from the next command;
//     "drop"        the at-th command is never delivered: the database did
//                   not see it;
//     "lose-reply"  the at-th command is delivered and executed, and its
//                   reply is thrown away: the database did it, authlink
//                   never hears so.
//   Either way every connection is then cut and new ones are refused (the
//   database is "down") until restore().
//
// Only data commands count (find, insert, update, delete, ...): connection
// handshakes and the driver's monitoring (hello, ping, ...) pass uncounted,
// as does anything the `counts` predicate rejects (e.g. a background write
// of an earlier call). Every counted command is logged in `seen`.
//
// When the database goes down, connections that never carried a data
// command (the driver's monitor) are cut first and the others a moment
// later. The order matters to mongodb 7.8's driver: a command it starts on a
// connection whose socket closes while the command is being serialized
// waits for a 'drain' that never comes, so a server monitor that starts its
// check (woken by a pool connection's close) on a connection that is closing
// hangs for good, and the client never selects the server again. Cut in this
// order, the monitor finds its connection closed and reconnects.

/** A command as authlink sent it. */
export interface WireCommand {
  /** The command name, as sent ("find", "insert", "findAndModify", ...). */
  readonly name: string;
  /** The collection it names, when its first field is a string. */
  readonly collection: string | undefined;
  /** The whole message (to look for a marker such as a request id). */
  readonly bytes: Buffer;
}

export type FaultMode = "drop" | "lose-reply";

export interface ArmOptions {
  /** Cut at this (1-based) counted command. */
  readonly at: number;
  readonly mode: FaultMode;
  /** Which commands count (default: every data command). */
  readonly counts?: (command: WireCommand) => boolean;
}

export interface FaultProxy {
  readonly port: number;
  /** Counted commands since the last arm() or watch(), in the order sent. */
  readonly seen: readonly WireCommand[];
  /** The command the last fault was injected at, once it has been. */
  readonly trippedAt: WireCommand | undefined;
  /** What the proxy did lately (connections, faults), for a failing test's message. */
  readonly journal: readonly string[];
  arm(options: ArmOptions): void;
  /** Count (and log) without injecting anything. */
  watch(counts?: (command: WireCommand) => boolean): void;
  /** Accept connections again after a fault. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

const OP_MSG = 2013;
const HEADER_BYTES = 16;
/** Commands that read or write data (lower case). */
const DATA_COMMANDS = new Set([
  "find",
  "getmore",
  "insert",
  "update",
  "delete",
  "findandmodify",
  "aggregate",
  "count",
  "distinct",
  "bulkwrite",
  "createindexes",
  "dropindexes",
  "listindexes",
  "listcollections",
  "drop",
  "dropdatabase",
]);

interface Message {
  readonly bytes: Buffer;
  readonly requestId: number;
  readonly responseTo: number;
}

/** Splits a byte stream into wire-protocol messages. */
function createFramer(onMessage: (message: Message) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = pending.readInt32LE(0);
      if (length < HEADER_BYTES) throw new Error(`fault proxy: bad message length ${length}`);
      if (pending.length < length) return;
      const bytes = pending.subarray(0, length);
      pending = pending.subarray(length);
      onMessage({ bytes, requestId: bytes.readInt32LE(4), responseTo: bytes.readInt32LE(8) });
    }
  };
}

/** The command of an OP_MSG: the first field of its body section (kind 0). */
export function commandOf(bytes: Buffer): WireCommand | undefined {
  if (bytes.readInt32LE(12) !== OP_MSG) return undefined;
  let offset = HEADER_BYTES + 4; // flagBits
  while (offset < bytes.length) {
    const kind = bytes.readUInt8(offset);
    offset += 1;
    const size = bytes.readInt32LE(offset);
    if (kind === 0) return firstField(bytes, offset);
    offset += size; // a document sequence (kind 1): size counts itself
  }
  return undefined;
}

function firstField(bytes: Buffer, documentStart: number): WireCommand | undefined {
  let offset = documentStart + 4;
  const type = bytes.readUInt8(offset);
  if (type === 0) return undefined;
  offset += 1;
  const nameEnd = bytes.indexOf(0, offset);
  const name = bytes.toString("utf8", offset, nameEnd);
  offset = nameEnd + 1;
  let collection: string | undefined;
  if (type === 0x02) {
    const length = bytes.readInt32LE(offset);
    collection = bytes.toString("utf8", offset + 4, offset + 4 + length - 1);
  }
  return { name, collection, bytes };
}

/** How long after the monitor's connections the data connections are cut. */
const DATA_CUT_DELAY_MS = 25;

interface Link {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** Has carried a data command (a pool connection, not the monitor's). */
  carriedData: boolean;
}

export async function startFaultProxy(targetHost: string, targetPort: number): Promise<FaultProxy> {
  const links = new Set<Link>();
  let seen: WireCommand[] = [];
  let armed: ArmOptions | undefined;
  let counts: (command: WireCommand) => boolean = () => true;
  let trippedAt: WireCommand | undefined;
  let down = false;
  let closing: Promise<void> = Promise.resolve();
  const journal: string[] = [];
  const note = (line: string) => {
    journal.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
    if (journal.length > 200) journal.shift();
  };

  const server = net.createServer();
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });

  /** The database goes away: every connection cut, none accepted until restore(). */
  const goDown = (at: WireCommand) => {
    note(`down at ${at.name} ${at.collection ?? ""}`);
    trippedAt = at;
    armed = undefined;
    down = true;
    const cut = (link: Link) => {
      link.client.destroy();
      link.upstream.destroy();
    };
    const data = [...links].filter((link) => link.carriedData);
    for (const link of links) if (!link.carriedData) cut(link);
    const dataCut = new Promise<void>((resolve) =>
      setTimeout(() => {
        for (const link of data) cut(link);
        resolve();
      }, DATA_CUT_DELAY_MS),
    );
    closing = Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), dataCut]).then(() => undefined);
  };

  server.on("connection", (client) => {
    if (down) {
      note("refused a connection (down)");
      client.destroy();
      return;
    }
    note(`accepted a connection from port ${client.remotePort}`);
    const upstream = net.connect(targetPort, targetHost);
    const link: Link = { client, upstream, carriedData: false };
    links.add(link);
    for (const socket of [client, upstream]) {
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.once("close", () => {
      upstream.destroy();
      links.delete(link);
    });
    upstream.once("close", () => client.destroy());

    /** Replies that must be swallowed (lose-reply), by the requestID they answer. */
    const swallow = new Map<number, WireCommand>();
    const fromClient = createFramer((message) => {
      if (down) return;
      const command = commandOf(message.bytes);
      const data = command !== undefined && DATA_COMMANDS.has(command.name.toLowerCase());
      if (data) link.carriedData = true;
      if (command && data && counts(command)) {
        seen.push(command);
        if (armed && seen.length === armed.at) {
          if (armed.mode === "drop") {
            goDown(command);
            return;
          }
          swallow.set(message.requestId, command);
          armed = undefined;
        }
      }
      upstream.write(message.bytes);
    });
    const fromServer = createFramer((message) => {
      if (down) return;
      const lost = swallow.get(message.responseTo);
      if (lost) {
        goDown(lost);
        return;
      }
      client.write(message.bytes);
    });
    const guard = (frame: (chunk: Buffer) => void) => (chunk: Buffer) => {
      try {
        frame(chunk);
      } catch {
        client.destroy();
        upstream.destroy();
      }
    };
    client.on("data", guard(fromClient));
    upstream.on("data", guard(fromServer));
  });

  await listen(0);
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    get seen() {
      return seen;
    },
    get trippedAt() {
      return trippedAt;
    },
    get journal() {
      return journal;
    },
    arm(options) {
      seen = [];
      trippedAt = undefined;
      counts = options.counts ?? (() => true);
      armed = options;
    },
    watch(predicate) {
      seen = [];
      trippedAt = undefined;
      counts = predicate ?? (() => true);
      armed = undefined;
    },
    async restore() {
      if (!down) return;
      await closing;
      down = false;
      await listen(port);
      note("restored");
    },
    async close() {
      armed = undefined;
      down = true;
      for (const { client, upstream } of links) {
        client.destroy();
        upstream.destroy();
      }
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
