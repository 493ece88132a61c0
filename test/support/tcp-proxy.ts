import net from "node:net";

// A TCP proxy between authlink and its database, to take the database away
// mid-run and bring it back without touching the database itself (so the
// same test runs against FerretDB or a real MongoDB):
//   cut()     refuses new connections and drops the open ones (database down)
//   restore() accepts again on the same port (database back)
//   stall()   keeps connections open but forwards nothing (database hangs)

export interface TcpProxy {
  readonly port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  stall(): void;
  unstall(): void;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Sees every chunk a client sends, with an id per connection (e.g. to count wire messages). */
  readonly onClientData?: (connection: number, chunk: Buffer) => void;
}

export async function startTcpProxy(targetHost: string, targetPort: number, options: TcpProxyOptions = {}): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const stalled = new Set<() => void>();
  let stalling = false;
  let connections = 0;

  const server = net.createServer((client) => {
    const connection = ++connections;
    if (options.onClientData) client.on("data", (chunk: Buffer) => options.onClientData?.(connection, chunk));
    const upstream = net.connect(targetPort, targetHost);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on("data", (chunk: Buffer) => {
        if (!stalling) {
          to.write(chunk);
          return;
        }
        from.pause();
        stalled.add(() => {
          to.write(chunk);
          from.resume();
        });
      });
    forward(client, upstream);
    forward(upstream, client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  await listen(0);
  const { port } = server.address() as net.AddressInfo;

  const unstall = () => {
    stalling = false;
    for (const resume of stalled) resume();
    stalled.clear();
  };
  return {
    port,
    async cut() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    restore: () => listen(port),
    stall() {
      stalling = true;
    },
    unstall,
    async close() {
      unstall();
      for (const socket of sockets) socket.destroy();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** host and port of a single-host mongodb:// URI (the fault tests proxy that one server). */
export function mongoHostPort(uri: string): { host: string; port: number } {
  const match = /^mongodb:\/\/(?:[^@/]*@)?([^/:,?]+)(?::(\d+))?(?:[/?]|$)/.exec(uri);
  if (!match) {
    throw new Error("the fault tests need AUTHLINK_TEST_MONGODB_URI to be a single-host mongodb:// URI (a standalone server or a direct connection to the primary)");
  }
  return { host: match[1] ?? "127.0.0.1", port: Number(match[2] ?? 27017) };
}

/** The same URI pointed at the proxy, connecting directly (no topology discovery past the proxy). */
export function viaProxy(uri: string, proxy: { readonly port: number }): string {
  const url = uri.replace(/^mongodb:\/\/((?:[^@/]*@)?)[^/?]+/, `mongodb://$1127.0.0.1:${proxy.port}`);
  return `${url}${url.includes("?") ? "&" : url.includes("/", "mongodb://".length) ? "?" : "/?"}directConnection=true`;
}
