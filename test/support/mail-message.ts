// Reads a received email back: headers, and the text and HTML parts of a
// multipart/alternative message (7bit, 8bit, quoted-printable or base64), as
// nodemailer writes them. Not a general MIME parser: it fails loudly on any
// other shape.

export interface ReceivedMail {
  /** RCPT TO addresses, lower-cased. */
  readonly recipients: readonly string[];
  /** Header names lower-cased; unfolded values. */
  readonly headers: ReadonlyMap<string, string>;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly raw: string;
}

interface Part {
  readonly headers: Map<string, string>;
  readonly body: string;
}

function splitPart(raw: string): Part {
  const end = raw.indexOf("\r\n\r\n");
  const head = end < 0 ? raw : raw.slice(0, end);
  const body = end < 0 ? "" : raw.slice(end + 4);
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body };
}

function parameter(header: string, name: string): string | undefined {
  const match = new RegExp(`;\\s*${name}="?([^";]+)"?`, "i").exec(header);
  return match?.[1];
}

function decodeBody(part: Part): string {
  const encoding = (part.headers.get("content-transfer-encoding") ?? "7bit").toLowerCase();
  switch (encoding) {
    case "7bit":
    case "8bit":
      return part.body;
    case "base64":
      return Buffer.from(part.body.replace(/\s+/g, ""), "base64").toString("utf8");
    case "quoted-printable": {
      const unwrapped = part.body.replace(/=\r\n/g, "");
      const bytes: number[] = [];
      for (let i = 0; i < unwrapped.length; i++) {
        const c = unwrapped[i] ?? "";
        const hex = unwrapped.slice(i + 1, i + 3);
        if (c === "=" && /^[0-9A-F]{2}$/i.test(hex)) {
          bytes.push(parseInt(hex, 16));
          i += 2;
        } else {
          bytes.push(...Buffer.from(c, "utf8"));
        }
      }
      return Buffer.from(bytes).toString("utf8");
    }
    default:
      throw new Error(`unsupported content-transfer-encoding ${encoding}`);
  }
}

export function parseMail(raw: string, recipients: readonly string[]): ReceivedMail {
  const message = splitPart(raw);
  const type = message.headers.get("content-type") ?? "";
  if (!/^multipart\/alternative/i.test(type)) throw new Error(`expected multipart/alternative, got ${type}`);
  const boundary = parameter(type, "boundary");
  if (!boundary) throw new Error("multipart without boundary");
  const sections = message.body.split(`--${boundary}`);
  const parts = sections.slice(1, -1).map((s) => splitPart(s.replace(/^\r\n/, "").replace(/\r\n$/, "")));
  const partOf = (mime: string) => {
    const found = parts.find((p) => (p.headers.get("content-type") ?? "").toLowerCase().startsWith(mime));
    if (!found) throw new Error(`no ${mime} part`);
    return decodeBody(found);
  };
  return {
    recipients,
    headers: message.headers,
    subject: message.headers.get("subject") ?? "",
    text: partOf("text/plain"),
    html: partOf("text/html"),
    raw,
  };
}
