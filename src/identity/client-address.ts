import { BlockList, isIP } from "node:net";

// The client's address for per-address limits and the audit trail. By default
// it is the TCP peer. X-Forwarded-For is believed only when the peer is a
// configured trusted proxy, and then only as far as the chain runs through
// trusted proxies: the client is the right-most address that is not one of
// them (everything to its left could have been written by the client).

export interface TrustedProxies {
  has(address: string): boolean;
  readonly empty: boolean;
}

export function parseTrustedProxies(entries: readonly string[]): { proxies: TrustedProxies; problems: string[] } {
  const list = new BlockList();
  const problems: string[] = [];
  for (const entry of entries) {
    const [address = "", prefix] = entry.split("/");
    const family = isIP(address);
    const bits = prefix === undefined ? undefined : Number(prefix);
    if (family === 0 || (bits !== undefined && !(Number.isInteger(bits) && bits >= 0 && bits <= (family === 4 ? 32 : 128)))) {
      problems.push(entry);
      continue;
    }
    const type = family === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, bits, type);
  }
  return {
    problems,
    proxies: {
      empty: entries.length === 0,
      has: (address) => {
        const plain = unmapped(address);
        const family = isIP(plain);
        return family !== 0 && list.check(plain, family === 4 ? "ipv4" : "ipv6");
      },
    },
  };
}

export function clientAddress(peerAddress: string, forwardedFor: string | undefined, trusted: TrustedProxies): string {
  const peer = unmapped(peerAddress);
  if (trusted.empty || forwardedFor === undefined || !trusted.has(peer)) return peer;
  const hops = forwardedFor
    .split(",")
    .map((hop) => unmapped(hop.trim()))
    .filter((hop) => hop !== "");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] ?? "";
    if (isIP(hop) === 0) return peer; // garbage in the chain: trust nothing from it
    if (!trusted.has(hop)) return hop;
  }
  return hops[0] ?? peer;
}

/** "::ffff:10.0.0.1" (an IPv4 peer on a dual-stack socket) as "10.0.0.1". */
function unmapped(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
