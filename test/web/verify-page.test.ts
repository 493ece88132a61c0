import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { gunzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { loadPageAssets } from "../../src/web/page-assets.js";
import { VERIFY_PAGE_CSP } from "../../src/web/verify-page.js";
import { escapeHtml } from "../../src/web/verify-page-html.js";
import { connectClient } from "../support/clients.js";
import { parseHtmlElements, textOf, type HtmlElement } from "../support/html.js";
import { rawRequest, type RawResponse } from "../support/http.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The verify page over plain HTTP (no browser): its headers, its methods, its
// assets, and an HTML document with nothing inline and nothing from a third
// party. What it shows and does in a browser: verify-page.browser.test.ts.

const HOSTILE_TITLE = `Acme <script>alert("t")</script> & 'Co'`;

function header(response: RawResponse, name: string): string {
  const value = response.headers[name];
  return Array.isArray(value) ? value.join(", ") : (value ?? "");
}

function assetPaths(html: string): { script: HtmlElement; style: HtmlElement } {
  const elements = parseHtmlElements(html);
  const scripts = elements.filter((e) => e.tag === "script");
  const styles = elements.filter((e) => e.tag === "link" && e.attributes.get("rel") === "stylesheet");
  assert.equal(scripts.length, 1, "exactly one script");
  assert.equal(styles.length, 1, "exactly one stylesheet");
  return { script: scripts[0]!, style: styles[0]! };
}

describe("the verify page at /verify", () => {
  let server: TestServer;
  let page: RawResponse;

  before(async () => {
    server = await startTestServer({ env: { AUTHLINK_PAGE_TITLE: HOSTILE_TITLE } });
    page = await rawRequest(`${server.url}/verify`, { method: "GET" });
  });
  after(() => server.close());

  test("GET answers 200 with the page and the security headers", () => {
    assert.equal(page.status, 200);
    assert.equal(header(page, "content-type"), "text/html; charset=utf-8");
    assert.equal(header(page, "content-security-policy"), VERIFY_PAGE_CSP);
    assert.equal(header(page, "referrer-policy"), "no-referrer");
    assert.equal(header(page, "cache-control"), "no-store");
    assert.equal(header(page, "x-content-type-options"), "nosniff");
    assert.equal(Number(header(page, "content-length")), Buffer.byteLength(page.body));
  });

  test("the CSP: nothing but the page's own script, style and RPCs; no framing, no base, forms only to itself", () => {
    const directives = new Map(
      header(page, "content-security-policy")
        .split(";")
        .map((d) => d.trim().split(/\s+/))
        .map(([name, ...values]) => [name, values.join(" ")] as const),
    );
    assert.equal(directives.get("default-src"), "'none'");
    assert.equal(directives.get("script-src"), "'self'");
    assert.equal(directives.get("style-src"), "'self'");
    assert.equal(directives.get("connect-src"), "'self'");
    assert.equal(directives.get("frame-ancestors"), "'none'");
    assert.equal(directives.get("base-uri"), "'none'");
    assert.equal(directives.get("form-action"), "'self'");
    assert.equal(directives.get("img-src"), "'self' data:");
    for (const value of directives.values()) {
      assert.doesNotMatch(value, /unsafe-inline|unsafe-eval|\*|https?:/, `no loosening: ${value}`);
    }
  });

  test("the query of a pre-fragment link (?token=…) is served the same page", async () => {
    const legacy = await rawRequest(`${server.url}/verify?token=abc&type=magiclink`, { method: "GET" });
    assert.equal(legacy.status, 200);
    assert.equal(legacy.body, page.body);
  });

  test("HEAD answers 200 with the headers and no body", async () => {
    const head = await rawRequest(`${server.url}/verify`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.equal(header(head, "content-security-policy"), VERIFY_PAGE_CSP);
    assert.equal(header(head, "content-length"), header(page, "content-length"));
  });

  for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    test(`${method} answers 405 with Allow: GET, HEAD`, async () => {
      const response = await rawRequest(`${server.url}/verify`, {
        method,
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: method === "OPTIONS" ? undefined : "token=abc&type=magiclink",
      });
      assert.equal(response.status, 405);
      assert.equal(header(response, "allow"), "GET, HEAD");
      assert.equal(header(response, "cache-control"), "no-store");
    });
  }

  test("no inline script, no inline style, no event handler attributes, nothing from a third party", () => {
    const elements = parseHtmlElements(page.body);
    for (const element of elements) {
      if (element.tag === "script") {
        assert.ok(element.attributes.get("src"), "every script has a src");
        assert.equal(element.rawText?.trim(), "", "and no inline text");
      }
      assert.notEqual(element.tag, "style", "no <style> element");
      assert.notEqual(element.tag, "form", "no form: nothing is redeemed without the script");
      assert.notEqual(element.tag, "base", "no <base>");
      for (const [name, value] of element.attributes) {
        assert.notEqual(name, "style", `no style attribute on <${element.tag}>`);
        assert.doesNotMatch(name, /^on/, `no event handler attribute on <${element.tag}>`);
        if (name === "src" || name === "href") {
          assert.match(value, /^(\/verify\/assets\/|data:,$)/, `only own assets: ${value}`);
        }
      }
    }
    assert.ok(elements.some((e) => e.tag === "noscript"), "explains itself without JavaScript");
  });

  test("the title is HTML-escaped wherever it appears", () => {
    assert.ok(!page.body.includes(HOSTILE_TITLE), "the raw title never appears");
    assert.ok(!page.body.includes(`alert("t")`));
    assert.equal(textOf(page.body, "title"), HOSTILE_TITLE);
    assert.ok(page.body.includes(`<title>${escapeHtml(HOSTILE_TITLE)}</title>`));
    const body = parseHtmlElements(page.body).find((e) => e.tag === "body");
    assert.equal(body?.attributes.get("data-product"), HOSTILE_TITLE);
    assert.equal(parseHtmlElements(page.body).filter((e) => e.tag === "script").length, 1);
  });

  test("the script and the stylesheet live at content-hashed paths, cached immutably", async () => {
    const { script, style } = assetPaths(page.body);
    const cases = [
      { path: script.attributes.get("src") ?? "", type: "text/javascript; charset=utf-8", ext: "js", integrity: script.attributes.get("integrity") },
      { path: style.attributes.get("href") ?? "", type: "text/css; charset=utf-8", ext: "css", integrity: style.attributes.get("integrity") },
    ];
    assert.equal(script.attributes.get("type"), "module");
    for (const { path, type, ext, integrity } of cases) {
      const match = new RegExp(`^/verify/assets/verify-page\\.([0-9a-f]{16})\\.${ext}$`).exec(path);
      assert.ok(match, `hashed path: ${path}`);
      const asset = await fetch(`${server.url}${path}`, { headers: { "accept-encoding": "identity" } });
      assert.equal(asset.status, 200);
      assert.equal(asset.headers.get("content-type"), type);
      assert.equal(asset.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assert.equal(asset.headers.get("x-content-type-options"), "nosniff");
      const body = Buffer.from(await asset.arrayBuffer());
      assert.ok(body.length > 0);
      assert.equal(createHash("sha256").update(body).digest("hex").slice(0, 16), match[1], "the name is the content's hash");
      assert.equal(integrity, `sha384-${createHash("sha384").update(body).digest("base64")}`, "subresource integrity");

      const head = await rawRequest(`${server.url}${path}`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.body, "");
      const post = await rawRequest(`${server.url}${path}`, { method: "POST", body: "x" });
      assert.equal(post.status, 405);

      // Compressed for browsers that ask, the same bytes once inflated.
      const gzipped = await rawRequest(`${server.url}${path}`, { method: "GET", headers: { "accept-encoding": "gzip, br" } });
      assert.equal(header(gzipped, "content-encoding"), "gzip");
      assert.equal(header(gzipped, "vary"), "accept-encoding");
    }
  });

  test("gzip bodies inflate to the asset", async () => {
    const { script } = assetPaths(page.body);
    const path = script.attributes.get("src") ?? "";
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${server.url}${path}`, { headers: { "accept-encoding": "gzip" }, agent: false }, (res) => {
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve());
        })
        .on("error", reject);
    });
    const plain = Buffer.from(await (await fetch(`${server.url}${path}`, { headers: { "accept-encoding": "identity" } })).arrayBuffer());
    assert.deepEqual(gunzipSync(Buffer.concat(chunks)), plain);
  });

  test("an asset name of another build is 404 and not cacheable", async () => {
    const response = await rawRequest(`${server.url}/verify/assets/verify-page.0123456789abcdef.js`, { method: "GET" });
    assert.equal(response.status, 404);
    assert.equal(header(response, "cache-control"), "no-store");
  });

  test("GenerateLink's action link points at this page, with the token in the fragment", async () => {
    const generated = await connectClient(server.url, { key: server.serviceKey }).generateLink({
      type: LinkType.MAGICLINK,
      email: "page-link@example.com",
    });
    const link = new URL(generated.actionLink);
    assert.equal(link.pathname, "/verify");
    assert.equal(link.search, "");
    assert.match(link.hash, /^#token=[A-Za-z0-9_-]{43}&type=magiclink$/);
  });
});

describe("the verify page under a base path", () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ env: { AUTHLINK_PUBLIC_URL: "https://auth.example.com/base/" } });
  });
  after(() => server.close());

  test("is served at {path}/verify, with its assets under it, and not at /verify", async () => {
    const page = await rawRequest(`${server.url}/base/verify`, { method: "GET" });
    assert.equal(page.status, 200);
    assert.equal(header(page, "content-security-policy"), VERIFY_PAGE_CSP);
    const { script, style } = assetPaths(page.body);
    for (const path of [script.attributes.get("src") ?? "", style.attributes.get("href") ?? ""]) {
      assert.match(path, /^\/base\/verify\/assets\/verify-page\.[0-9a-f]{16}\.(js|css)$/);
      assert.equal((await rawRequest(`${server.url}${path}`, { method: "GET" })).status, 200);
    }
    assert.notEqual((await rawRequest(`${server.url}/verify`, { method: "GET" })).status, 200);
    assert.equal((await rawRequest(`${server.url}/base/verify`, { method: "POST", body: "" })).status, 405);
  });

  test("action links name the page under the base path", async () => {
    const generated = await connectClient(server.url, { key: server.serviceKey }).generateLink({
      type: LinkType.MAGICLINK,
      email: "base-path@example.com",
    });
    assert.equal(new URL(generated.actionLink).pathname, "/base/verify");
  });
});

test("a server whose page was not built fails at start-up, saying how to build it", () => {
  assert.throws(() => loadPageAssets("/nonexistent/authlink-web/"), /the verify page is not built .*verify-page\.js.*npm run build/);
});
