import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { parseMail, type ReceivedMail } from "./mail-message.js";

// A local SMTP server that accepts every message and keeps it: real SMTP
// exchanges (nodemailer → smtp-server over a socket), read back by tests.

export interface SmtpSink {
  /** smtp://127.0.0.1:PORT, for nodemailer. */
  readonly url: string;
  /** Every message received so far. */
  readonly messages: ReceivedMail[];
  /** The next message to this address not returned before, waiting for it up to timeoutMs. */
  nextMailTo(address: string, timeoutMs?: number): Promise<ReceivedMail>;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const taken = new Set<ReceivedMail>();
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        try {
          const recipients = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
          messages.push(parseMail(Buffer.concat(chunks).toString("utf8"), recipients));
          for (const wake of waiters) wake();
          callback();
        } catch (error) {
          callback(error as Error);
        }
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    async nextMailTo(address, timeoutMs = 10_000) {
      const wanted = address.toLowerCase();
      const find = () => messages.find((m) => !taken.has(m) && m.recipients.includes(wanted));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const mail = find();
        if (mail) {
          taken.add(mail);
          return mail;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no mail to ${address} within ${timeoutMs} ms (received: ${messages.length})`);
        await new Promise<void>((resolve) => {
          const wake = () => {
            waiters.delete(wake);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(wake, left);
          waiters.add(wake);
        });
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
