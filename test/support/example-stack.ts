import { randomBytes } from "node:crypto";
import { startExampleApp, type RunningExampleApp } from "../../examples/node-backend/app.js";
import { createAssertionVerifier } from "../../examples/node-backend/assertion.js";
import { createAuthlinkClients } from "../../examples/node-backend/authlink-clients.js";
import { loadEmailTemplate } from "../../examples/node-backend/email-template.js";
import { createSmtpMailer } from "../../examples/node-backend/mailer.js";
import { ADMIN_PAGE_DIR, TEMPLATES_DIR } from "../../examples/node-backend/paths.js";
import { createSessionCookies } from "../../examples/node-backend/session.js";
import type { TestDatabase } from "./mongo.js";
import { freePort } from "./ports.js";
import { startSmtpSink, type SmtpSink } from "./smtp-sink.js";
import { startTestServer, type TestServer } from "./test-server.js";

// The examples' world, all real: an authlink (embedded store or MongoDB)
// whose public URL is its own address (so its links open in a browser), a
// local SMTP sink, and the example backend (examples/node-backend) on its
// own origin, mailing through the sink over SMTP, as its main.ts wires it.

export const EXAMPLE_APP_NAME = "Acme Notes";

export interface ExampleStack {
  readonly authlink: TestServer;
  readonly app: RunningExampleApp;
  readonly sink: SmtpSink;
  /** The example app's log lines. */
  readonly appLogs: string[];
  close(): Promise<void>;
}

export interface ExampleStackOptions {
  readonly database?: TestDatabase;
  readonly adminEmails?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export async function startExampleStack(options: ExampleStackOptions = {}): Promise<ExampleStack> {
  const [authlinkPort, appPort] = [await freePort(), await freePort()];
  const appUrl = `http://127.0.0.1:${appPort}`;
  const authlinkUrl = `http://127.0.0.1:${authlinkPort}`;
  const sink = await startSmtpSink();
  const authlink = await startTestServer({
    database: options.database,
    env: {
      AUTHLINK_ADDR: `127.0.0.1:${authlinkPort}`,
      AUTHLINK_PUBLIC_URL: authlinkUrl,
      AUTHLINK_REDIRECT_ALLOW_LIST: `${appUrl}/callback`,
      AUTHLINK_PAGE_TITLE: EXAMPLE_APP_NAME,
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
      ...options.env,
    },
  });
  const appLogs: string[] = [];
  const mailer = createSmtpMailer({ url: sink.url, from: `${EXAMPLE_APP_NAME} <no-reply@acme.example>` });
  let app: RunningExampleApp;
  try {
    app = await startExampleApp(
      {
        appName: EXAMPLE_APP_NAME,
        appUrl,
        authlink: createAuthlinkClients({ url: authlink.url, serviceKey: authlink.serviceKey }),
        verifyAssertion: createAssertionVerifier({ issuer: authlinkUrl }),
        sessions: createSessionCookies({ secret: randomBytes(32).toString("base64url"), secure: false }),
        mailer,
        signInEmail: await loadEmailTemplate(TEMPLATES_DIR, "sign-in"),
        adminEmails: options.adminEmails ?? [],
        adminPageDir: ADMIN_PAGE_DIR,
        log: (line) => appLogs.push(line),
      },
      { host: "127.0.0.1", port: appPort },
    );
  } catch (error) {
    await authlink.close();
    await sink.close();
    throw error;
  }
  return {
    authlink,
    app,
    sink,
    appLogs,
    async close() {
      await app.close();
      mailer.close?.();
      await authlink.close();
      await sink.close();
    },
  };
}
