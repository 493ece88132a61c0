import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { clientAddress, parseTrustedProxies } from "../../src/identity/client-address.js";

describe("clientAddress", () => {
  const { proxies } = parseTrustedProxies(["10.0.0.0/8", "192.168.1.10", "fd00::/8"]);
  const none = parseTrustedProxies([]).proxies;

  test("without trusted proxies X-Forwarded-For is ignored", () => {
    assert.equal(clientAddress("10.1.2.3", "1.2.3.4", none), "10.1.2.3");
  });

  test("from an untrusted peer X-Forwarded-For is ignored", () => {
    assert.equal(clientAddress("8.8.8.8", "1.2.3.4", proxies), "8.8.8.8");
  });

  test("through trusted proxies the right-most untrusted hop is the client", () => {
    assert.equal(clientAddress("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.7", proxies), "1.2.3.4");
    assert.equal(clientAddress("192.168.1.10", "1.2.3.4", proxies), "1.2.3.4");
    assert.equal(clientAddress("fd00::1", "2001:db8::1", proxies), "2001:db8::1");
  });

  test("IPv4-mapped peers are matched as IPv4", () => {
    assert.equal(clientAddress("::ffff:10.0.0.5", "1.2.3.4", proxies), "1.2.3.4");
    assert.equal(clientAddress("::ffff:8.8.8.8", "1.2.3.4", proxies), "8.8.8.8");
  });

  test("garbage in the chain makes the peer the client", () => {
    assert.equal(clientAddress("10.0.0.5", "1.2.3.4, not-an-ip", proxies), "10.0.0.5");
  });

  test("a chain of only trusted hops yields its left-most hop", () => {
    assert.equal(clientAddress("10.0.0.5", "10.0.0.9, 10.0.0.8", proxies), "10.0.0.9");
  });

  test("bad entries are reported", () => {
    assert.deepEqual(parseTrustedProxies(["10.0.0.0/33", "nope", "1.2.3.4/x", "::1/129", "1.2.3.4"]).problems, [
      "10.0.0.0/33",
      "nope",
      "1.2.3.4/x",
      "::1/129",
    ]);
  });
});
