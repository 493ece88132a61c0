import { startExampleApp } from "./app.js";
import { createAssertionVerifier } from "./assertion.js";
import { createAuthlinkClients } from "./authlink-clients.js";
import { loadEmailTemplate } from "./email-template.js";
import { createConsoleMailer, createSmtpMailer } from "./mailer.js";
import { ADMIN_PAGE_DIR, TEMPLATES_DIR } from "./paths.js";
import { createSessionCookies } from "./session.js";

// Runs the example backend from the environment (see README.md here):
//
//   AUTHLINK_URL           where authlink answers (default http://127.0.0.1:8080)
//   AUTHLINK_PUBLIC_URL    authlink's AUTHLINK_PUBLIC_URL: the assertions' issuer (default AUTHLINK_URL)
//   AUTHLINK_AUDIENCE      authlink's AUTHLINK_ASSERTION_AUDIENCE (default the issuer)
//   AUTHLINK_SERVICE_KEY   one of authlink's service keys (required)
//   APP_URL                this app's origin as browsers reach it (default http://127.0.0.1:3000)
//   APP_NAME               shown on pages and in emails (default "Example app")
//   SESSION_SECRET         at least 32 bytes (required)
//   SMTP_URL, MAIL_FROM    real SMTP; unset = emails printed here
//   ADMIN_EMAILS           comma-separated: who may use /admin/
//   HOST, PORT             where to listen (default 127.0.0.1 and APP_URL's port)

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is required (see examples/node-backend/README.md)`);
  return value;
}

async function main(env: NodeJS.ProcessEnv): Promise<void> {
  const authlinkUrl = env.AUTHLINK_URL ?? "http://127.0.0.1:8080";
  const appUrl = new URL(env.APP_URL ?? "http://127.0.0.1:3000");
  const app = await startExampleApp(
    {
      appName: env.APP_NAME ?? "Example app",
      appUrl: appUrl.origin,
      authlink: createAuthlinkClients({ url: authlinkUrl, serviceKey: required(env, "AUTHLINK_SERVICE_KEY") }),
      verifyAssertion: createAssertionVerifier({ issuer: env.AUTHLINK_PUBLIC_URL ?? authlinkUrl, audience: env.AUTHLINK_AUDIENCE }),
      sessions: createSessionCookies({ secret: required(env, "SESSION_SECRET"), secure: appUrl.protocol === "https:" }),
      mailer: env.SMTP_URL
        ? createSmtpMailer({ url: env.SMTP_URL, from: env.MAIL_FROM ?? "Example app <no-reply@example.com>" })
        : createConsoleMailer(),
      signInEmail: await loadEmailTemplate(TEMPLATES_DIR, "sign-in"),
      adminEmails: (env.ADMIN_EMAILS ?? "").split(",").filter((email) => email.trim() !== ""),
      adminPageDir: ADMIN_PAGE_DIR,
    },
    { host: env.HOST ?? "127.0.0.1", port: Number(env.PORT ?? (appUrl.port || 3000)) },
  );
  process.stderr.write(`example app on ${app.url} (authlink at ${authlinkUrl})\n`);
  const stop = () => void app.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

main(process.env).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
