import { timestampDate } from "@bufbuild/protobuf/wkt";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { createAdminApi, type AdminApi } from "./admin-api.js";
import type { WhoAmI } from "./admin-api-types.js";
import { AssertionRefused, type AssertionVerifier, type SignInProof } from "./assertion.js";
import type { AuthlinkClients } from "./authlink-clients.js";
import { describeAuthlinkError } from "./authlink-errors.js";
import { formatDuration, formatExpiry, type EmailTemplate } from "./email-template.js";
import { HttpError, isJson, readFields, redirect, send, sendHtml, sendJson, stringField } from "./http-io.js";
import type { Mailer } from "./mailer.js";
import { APP_CSS, CALLBACK_SCRIPT, callbackPage, checkEmailPage, codePage, homePage, messagePage } from "./pages.js";
import type { SessionCookies } from "./session.js";
import { readStaticFile } from "./static-files.js";

// The example backend: "send me a sign-in link" (GenerateLink MAGICLINK with
// the service key, the link mailed from a template), the callback that checks
// authlink's assertion and starts the app's own session, sign-in by code
// (VerifyLink), a page that shows who is signed in, and the admin link
// generator (a React page and its JSON API) for the addresses in adminEmails.
//
//   GET  /                 sign-in form, or who is signed in
//   POST /signin           email → a sign-in email
//   GET  /callback         authlink's verify page sends the browser here with #authlink_assertion=…
//   POST /session          { assertion } (from /callback's script) → session cookie
//   GET  /signin/code      POST /signin/code  email + code → session cookie
//   POST /signout
//   GET  /admin/…          the admin link generator (built by Vite)
//   POST /admin/api/{me,generate,links,revoke}

export interface ExampleAppOptions {
  readonly appName: string;
  /** The app's own origin as browsers reach it, e.g. http://127.0.0.1:3000. */
  readonly appUrl: string;
  readonly authlink: AuthlinkClients;
  readonly verifyAssertion: AssertionVerifier;
  readonly sessions: SessionCookies;
  readonly mailer: Mailer;
  readonly signInEmail: EmailTemplate;
  /** Addresses allowed to use the admin link generator. */
  readonly adminEmails: readonly string[];
  /** Vite's build of examples/admin-link-generator. */
  readonly adminPageDir: string;
  /** The time zone emails state expiry times in (default UTC). */
  readonly timeZone?: string;
  readonly log?: (line: string) => void;
}

export function createExampleHandler(options: ExampleAppOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const appOrigin = new URL(options.appUrl).origin;
  const callbackUrl = `${appOrigin}/callback`;
  const admins = new Set(options.adminEmails.map((email) => email.trim().toLowerCase()));
  const adminApi: AdminApi = createAdminApi({ authlink: options.authlink, callbackUrl });
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { appName, sessions } = options;

  async function sendSignInLink(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const email = stringField(await readFields(req), "email");
    let link;
    try {
      link = await options.authlink.auth.generateLink({ type: LinkType.MAGICLINK, email, redirectTo: callbackUrl });
    } catch (error) {
      const failure = describeAuthlinkError(error);
      log(`GenerateLink failed: ${failure.code} ${failure.reason}`);
      const text =
        failure.code === "invalid_argument"
          ? "That does not look like an email address. Check it and try again."
          : failure.code === "resource_exhausted"
            ? `Too many sign-in emails were asked for. Try again in ${formatDuration((failure.retryAfterSeconds ?? 60) * 1000)}.`
            : "Sign-in is not available right now. Try again in a few minutes.";
      if (isJson(req)) return sendJson(res, failure.httpStatus, { error: text });
      return sendHtml(res, failure.httpStatus, messagePage(appName, "We could not send your link", text));
    }
    const expiresAt = link.expiresAt ? timestampDate(link.expiresAt) : new Date();
    const mail = options.signInEmail.render(link.user?.email ?? email, {
      app_name: appName,
      email: link.user?.email ?? email,
      action_link: link.actionLink,
      code: link.emailOtp,
      code_page: `${appOrigin}/signin/code`,
      expires_at: formatExpiry(expiresAt, options.timeZone),
      expires_in: formatDuration(expiresAt.getTime() - Date.now()),
    });
    try {
      await options.mailer.send(mail);
    } catch (error) {
      log(`sending the sign-in email failed: ${(error as Error).message}`);
      const text = "We could not send the email. Try again in a few minutes.";
      if (isJson(req)) return sendJson(res, 502, { error: text });
      return sendHtml(res, 502, messagePage(appName, "We could not send your link", text));
    }
    if (isJson(req)) return sendJson(res, 202, { sent: true });
    sendHtml(res, 200, checkEmailPage(appName, mail.to));
  }

  function startSession(proof: SignInProof): string {
    return sessions.start({ userId: proof.userId, email: proof.email, amr: proof.amr });
  }

  async function acceptAssertion(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isJson(req)) throw new HttpError(415, "send JSON");
    const assertion = stringField(await readFields(req), "assertion");
    try {
      const proof = await options.verifyAssertion(assertion);
      sendJson(res, 200, { email: proof.email }, { "set-cookie": startSession(proof) });
    } catch (error) {
      if (!(error instanceof AssertionRefused)) throw error;
      log(error.message);
      sendJson(res, 401, { error: "This sign-in link could not be accepted. Ask for a new one." });
    }
  }

  async function signInWithCode(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fields = await readFields(req);
    const email = stringField(fields, "email");
    const otp = stringField(fields, "code").replace(/\s+/g, "");
    try {
      // This backend made the call, so it could trust the answer; it checks
      // the assertion anyway, so that every sign-in passes one gate.
      const answer = await options.authlink.auth.verifyLink({
        type: LinkType.MAGICLINK,
        credential: { case: "emailOtp", value: { email, otp } },
      });
      const proof = await options.verifyAssertion(answer.assertion);
      redirect(res, "/", { "set-cookie": startSession(proof) });
    } catch (error) {
      const failure = error instanceof AssertionRefused ? undefined : describeAuthlinkError(error);
      log(failure ? `VerifyLink failed: ${failure.code} ${failure.reason}` : (error as Error).message);
      const text =
        failure?.code === "resource_exhausted"
          ? "Too many attempts. Wait a little and try again."
          : "That code is not valid for this address, or it has expired or been used. Check it, or ask for a new email.";
      sendHtml(res, failure?.httpStatus === 429 ? 429 : 401, codePage(appName, { email, error: text }));
    }
  }

  async function admin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === "/admin") return redirect(res, "/admin/");
    if (path.startsWith("/admin/api/")) {
      if (req.method !== "POST") throw new HttpError(405, "POST only");
      if (!isJson(req)) throw new HttpError(415, "send JSON");
      const fields = await readFields(req);
      const session = sessions.read(req);
      const isAdmin = session !== undefined && admins.has(session.email.toLowerCase());
      const route = path.slice("/admin/api/".length);
      if (route === "me") return sendJson(res, 200, { email: session?.email ?? "", admin: isAdmin } satisfies WhoAmI);
      if (!isAdmin) {
        return sendJson(res, 403, { error: { code: "permission_denied", message: "Sign in as an administrator first." } });
      }
      const answer = await adminApi(route, fields);
      if (answer.status >= 500) log(`admin ${route}: ${JSON.stringify(answer.body)}`);
      return sendJson(res, answer.status, answer.body);
    }
    if (req.method !== "GET" && req.method !== "HEAD") throw new HttpError(405, "GET only");
    const file = await readStaticFile(options.adminPageDir, path.slice("/admin/".length));
    if (file) return send(res, 200, file.type, file.body, file.immutable ? { "cache-control": "public, max-age=31536000, immutable" } : {});
    if (!existsSync(join(options.adminPageDir, "index.html"))) {
      return sendHtml(res, 503, messagePage(appName, "Admin page not built", "Run npm run build (or npm run build:examples) first."));
    }
    sendHtml(res, 404, messagePage(appName, "Not found", "There is no such page."));
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", appOrigin).pathname;
    const method = req.method ?? "GET";
    // Refuse what another site's page posts here (login CSRF): browsers send Origin with every POST.
    if (method === "POST" && req.headers.origin !== undefined && req.headers.origin !== appOrigin) {
      throw new HttpError(403, "cross-origin request refused");
    }
    if (path === "/admin" || path.startsWith("/admin/")) return admin(req, res, path);
    const key = `${method} ${path}`;
    switch (key) {
      case "GET /": {
        const session = sessions.read(req);
        return sendHtml(res, 200, homePage(appName, session, session !== undefined && admins.has(session.email.toLowerCase())));
      }
      case "POST /signin":
        return sendSignInLink(req, res);
      case "GET /callback":
        return sendHtml(res, 200, callbackPage(appName));
      case "POST /session":
        return acceptAssertion(req, res);
      case "GET /signin/code":
        return sendHtml(res, 200, codePage(appName));
      case "POST /signin/code":
        return signInWithCode(req, res);
      case "POST /signout":
        return redirect(res, "/", { "set-cookie": sessions.clear() });
      case "GET /assets/app.css":
        return send(res, 200, "text/css; charset=utf-8", APP_CSS);
      case "GET /assets/callback.js":
        return send(res, 200, "text/javascript; charset=utf-8", CALLBACK_SCRIPT);
      default:
        return sendHtml(res, 404, messagePage(appName, "Not found", "There is no such page."));
    }
  }

  return (req, res) => {
    route(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (status === 500) log(`request failed: ${error instanceof Error ? error.stack : String(error)}`);
      if (res.headersSent) return void res.destroy();
      const text = error instanceof HttpError ? error.message : "Something went wrong.";
      if (isJson(req) || (req.url ?? "").startsWith("/admin/api/")) sendJson(res, status, { error: { code: "http", message: text } });
      else sendHtml(res, status, messagePage(appName, "Something went wrong", text));
    });
  };
}

export interface RunningExampleApp {
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 = any free port). */
export async function startExampleApp(options: ExampleAppOptions, listen: { host: string; port: number }): Promise<RunningExampleApp> {
  const server = http.createServer(createExampleHandler(options));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${listen.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
