import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GenerateLinkResponseSchema, LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { UserAdminService } from "../../gen/authlink/v1/user_admin_service_pb.js";
import { Code, connectClient, fieldViolationsOf, reasonOf, rejection, type AdminClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// UserAdminService end to end, on MongoDB and on the embedded store, over
// real sockets: gRPC (HTTP/2) and Connect (HTTP/1.1 JSON) on the main port,
// gRPC on the grpc-js listener. Create, get, update, delete and invite as an
// operator uses them; what each does to the user's links (seen through
// VerifyLink and PreviewLink); the refusals without the service role; and no
// password or hash in any answer, log line or audit event.

const database = await useTestDatabase("user_admin_e2e");

type UserClient = Client<typeof UserAdminService>;
type Protocol = "grpc" | "connect";

const PASSWORD = "correct horse battery staple";
const NEW_PASSWORD = "an entirely new passphrase";

let emailCounter = 0;
const email = (label: string) => `${label}-${++emailCounter}@example.com`;
const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";

function bearer(key: string | null): Interceptor {
  return (next) => async (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}

/** A UserAdminService client: gRPC over HTTP/2, or Connect JSON over HTTP/1.1. */
function userClient(baseUrl: string, protocol: Protocol, key: string | null): UserClient {
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors: [bearer(key)] })
      : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(key)] });
  return createClient(UserAdminService, transport);
}

async function refused(call: Promise<unknown>, code: Code, reason: string, fields?: string[]) {
  const error = await rejection(call);
  assert.equal(Code[error.code], Code[code], error.message);
  assert.equal(reasonOf(error), reason);
  if (fields) assert.deepEqual(fieldViolationsOf(error).sort(), [...fields].sort());
  return error;
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    /** Every answer received, as JSON, to scan for secrets at the end. */
    const answers: unknown[] = [];

    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined, env: { ...GRPC_JS_LISTENER } });
    });
    after(() => server.close());

    const users = (protocol: Protocol = "grpc"): UserClient => {
      const client = userClient(server.url, protocol, server.serviceKey);
      // Keep what comes back (as wire JSON would show it) for the secret scan.
      return new Proxy(client, {
        get(target, method: keyof UserClient) {
          const call = target[method] as (...args: unknown[]) => Promise<unknown>;
          return async (...args: unknown[]) => {
            const answer = await call.apply(target, args);
            answers.push(answer);
            return answer;
          };
        },
      });
    };
    const admin = (): AdminClient => connectClient(server.url, { protocol: "grpc", key: server.serviceKey });
    const magicLink = async (address: string) => {
      const generated = await admin().generateLink({ type: LinkType.MAGICLINK, email: address });
      return { generated, token: tokenOf(generated) };
    };
    const preview = async (type: LinkType, token: string) => (await admin().previewLink({ type, token })).state;
    const verify = (type: LinkType, token: string) => admin().verifyLink({ type, credential: { case: "token", value: token } });

    for (const protocol of ["grpc", "connect"] as const) {
      test(`CreateUser over ${protocol}: with and without password, email_confirm, normalized address`, async () => {
        const address = email(`Create-${protocol}`);
        const created = await users(protocol).createUser({
          email: address.toUpperCase(),
          password: PASSWORD,
          userMetadata: { plan: "pro", seats: 3 },
          emailConfirm: true,
        });
        const user = created.user!;
        assert.equal(user.email, address.toLowerCase());
        assert.equal(user.hasPassword, true);
        assert.ok(user.emailConfirmedAt, "confirmed on request");
        assert.equal(user.invitedAt, undefined);
        assert.deepEqual(user.userMetadata, { plan: "pro", seats: 3 });
        assert.match(user.id, /^[0-9a-f-]{36}$/);

        const plain = (await users(protocol).createUser({ email: email(`plain-${protocol}`) })).user!;
        assert.equal(plain.hasPassword, false);
        assert.equal(plain.emailConfirmedAt, undefined);
        assert.deepEqual(plain.userMetadata, {});
      });

      test(`CreateUser over ${protocol}: weak password, bad address, existing address`, async () => {
        const weak = email(`weak-${protocol}`);
        await refused(users(protocol).createUser({ email: weak, password: "password123" }), Code.InvalidArgument, "weak_password", ["password"]);
        await refused(users(protocol).createUser({ email: "not an address" }), Code.InvalidArgument, "validation_failed", ["email"]);
        await refused(users(protocol).createUser({ email: "" }), Code.InvalidArgument, "validation_failed", ["email"]);
        await refused(users(protocol).getUser({ key: { case: "email", value: weak } }), Code.NotFound, "user_not_found");

        const taken = email(`taken-${protocol}`);
        const first = (await users(protocol).createUser({ email: taken, userMetadata: { first: true } })).user!;
        await refused(users(protocol).createUser({ email: taken.toUpperCase(), password: PASSWORD }), Code.AlreadyExists, "email_exists");
        assert.deepEqual((await users(protocol).getUser({ key: { case: "id", value: first.id } })).user, first, "the first user is unchanged");
      });
    }

    test("GetUser by id (gRPC) and by address, normalized (Connect); unknown id or address is NOT_FOUND", async () => {
      const address = email("get");
      const user = (await users().createUser({ email: address, password: PASSWORD })).user!;
      assert.deepEqual((await users("grpc").getUser({ key: { case: "id", value: user.id } })).user, user);
      assert.deepEqual((await users("connect").getUser({ key: { case: "email", value: address.toUpperCase() } })).user, user);
      await refused(users("connect").getUser({ key: { case: "id", value: "00000000-0000-4000-8000-000000000000" } }), Code.NotFound, "user_not_found");
      await refused(users("grpc").getUser({ key: { case: "email", value: email("nobody") } }), Code.NotFound, "user_not_found");
      await refused(users("grpc").getUser({}), Code.InvalidArgument, "validation_failed", ["key"]);
    });

    test("UpdateUser merges metadata: keys replace, null removes, others stay (Connect JSON)", async () => {
      const user = (await users().createUser({ email: email("merge"), userMetadata: { keep: 1, replace: "old", drop: true } })).user!;
      const updated = await users("connect").updateUser({ id: user.id, userMetadata: { replace: ["new"], drop: null, added: { x: 1 } } });
      assert.deepEqual(updated.user?.userMetadata, { keep: 1, replace: ["new"], added: { x: 1 } });
      assert.equal(updated.revokedLinks, 0);
      assert.deepEqual((await users().getUser({ key: { case: "id", value: user.id } })).user?.userMetadata, updated.user?.userMetadata);
    });

    test("UpdateUser with a new password revokes an outstanding magic link: VerifyLink fails, PreviewLink says REVOKED", async () => {
      const address = email("newpass");
      const user = (await users().createUser({ email: address })).user!;
      const { token } = await magicLink(address);
      const updated = await users("grpc").updateUser({ id: user.id, password: NEW_PASSWORD });
      assert.equal(updated.revokedLinks, 1);
      assert.equal(updated.user?.hasPassword, true);
      await refused(verify(LinkType.MAGICLINK, token), Code.PermissionDenied, "link_invalid_or_expired");
      assert.equal(await preview(LinkType.MAGICLINK, token), LinkState.REVOKED);
      await refused(users().updateUser({ id: user.id, password: "short" }), Code.InvalidArgument, "weak_password", ["password"]);
    });

    test("UpdateUser with a new address: old address free, links revoked; an address another user holds is ALREADY_EXISTS and changes nothing", async () => {
      const oldAddress = email("old");
      const user = (await users().createUser({ email: oldAddress, userMetadata: { a: 1 } })).user!;
      const { token } = await magicLink(oldAddress);
      const holder = (await users().createUser({ email: email("holder") })).user!;

      await refused(
        users("connect").updateUser({ id: user.id, email: holder.email, userMetadata: { a: 2 }, password: NEW_PASSWORD, emailConfirm: true }),
        Code.AlreadyExists,
        "email_exists",
      );
      assert.deepEqual((await users().getUser({ key: { case: "id", value: user.id } })).user, user, "nothing changed");
      assert.equal(await preview(LinkType.MAGICLINK, token), LinkState.VALID, "the link is untouched");

      const newAddress = email("new");
      const moved = await users("grpc").updateUser({ id: user.id, email: newAddress });
      assert.equal(moved.user?.email, newAddress);
      assert.equal(moved.revokedLinks, 1);
      assert.equal(await preview(LinkType.MAGICLINK, token), LinkState.REVOKED);
      await refused(users().getUser({ key: { case: "email", value: oldAddress } }), Code.NotFound, "user_not_found");
      assert.equal((await users().getUser({ key: { case: "email", value: newAddress } })).user?.id, user.id);
      const reused = (await users().createUser({ email: oldAddress })).user!;
      assert.notEqual(reused.id, user.id, "the old address is free");
      await refused(users().updateUser({ id: "00000000-0000-4000-8000-000000000000", userMetadata: { a: 1 } }), Code.NotFound, "user_not_found");
    });

    test("UpdateUser email_confirm confirms the address once", async () => {
      const user = (await users().createUser({ email: email("confirm") })).user!;
      assert.equal(user.emailConfirmedAt, undefined);
      const confirmed = (await users("connect").updateUser({ id: user.id, emailConfirm: true })).user!;
      assert.ok(confirmed.emailConfirmedAt);
      const again = (await users("grpc").updateUser({ id: user.id, emailConfirm: true })).user!;
      assert.deepEqual(again.emailConfirmedAt, confirmed.emailConfirmedAt);
    });

    test("DeleteUser revokes the user's links, the user is gone, the address is reusable, the audit keeps the history", async () => {
      const address = email("delete");
      const user = (await users().createUser({ email: address, password: PASSWORD })).user!;
      const { generated: magic, token } = await magicLink(address);
      const recovery = await admin().generateLink({ type: LinkType.RECOVERY, email: address });
      const deleted = await users("connect").deleteUser({ id: user.id });
      assert.equal(deleted.revokedLinks, 2);
      assert.equal(await preview(LinkType.MAGICLINK, token), LinkState.REVOKED);
      await refused(verify(LinkType.RECOVERY, tokenOf(recovery)), Code.PermissionDenied, "link_invalid_or_expired");
      await refused(users().getUser({ key: { case: "id", value: user.id } }), Code.NotFound, "user_not_found");
      await refused(users("grpc").deleteUser({ id: user.id }), Code.NotFound, "user_not_found");
      await refused(users().deleteUser({ id: "" }), Code.InvalidArgument, "validation_failed", ["id"]);
      const again = (await users().createUser({ email: address })).user!;
      assert.notEqual(again.id, user.id);

      const events = await server.store.audit.find({ userId: user.id }, 50);
      const methods = events.map((event) => `${event.method}:${event.outcome}`);
      for (const expected of ["CreateUser:ok", "GenerateLink:ok", "DeleteUser:ok", "DeleteUser:user_not_found"]) {
        assert.ok(methods.includes(expected), `${expected} in ${methods.join(", ")}`);
      }
      const deletion = events.find((event) => event.method === "DeleteUser" && event.outcome === "ok");
      assert.equal(deletion?.email, address);
      assert.deepEqual([...(deletion?.hashedTokens ?? [])].sort(), [magic.hashedToken, recovery.hashedToken].sort());
    });

    test("InviteUser answers GenerateLink INVITE's shape; re-invites an unconfirmed user; a confirmed one is ALREADY_EXISTS", async () => {
      const address = email("invite");
      const invited = (
        await users("grpc").inviteUser({ email: address, redirectTo: "https://app.example.com/welcome", data: { team: "blue" }, expiresIn: { seconds: 7200n } })
      ).link!;
      const generated = await admin().generateLink({ type: LinkType.INVITE, email: email("invite-ref"), redirectTo: "https://app.example.com/welcome", data: { team: "blue" } });
      const keys = (message: typeof generated) => Object.keys(toJson(GenerateLinkResponseSchema, message) as object).sort();
      assert.deepEqual(keys(invited), keys(generated), "the same fields as GenerateLink INVITE");
      assert.equal(invited.verificationType, LinkType.INVITE);
      assert.match(invited.actionLink, /\/verify#token=[A-Za-z0-9_-]{43}&type=invite&redirect_to=/);
      assert.match(invited.emailOtp, /^\d{6}$/);
      assert.match(invited.hashedToken, /^[0-9a-f]{64}$/);
      assert.equal(invited.redirectTo, "https://app.example.com/welcome");
      assert.equal(invited.user?.email, address);
      assert.ok(invited.user?.invitedAt);
      assert.deepEqual(invited.user?.userMetadata, { team: "blue" });
      assert.equal(
        timestampDate(invited.expiresAt!).getTime() - timestampDate(invited.user!.invitedAt!).getTime(),
        7_200_000,
        "the requested lifetime",
      );
      const events = await server.store.audit.find({ userId: invited.user!.id }, 10);
      assert.deepEqual(events.map((event) => [event.method, event.outcome, event.linkType]), [["InviteUser", "ok", "invite"]]);

      const again = (await users("connect").inviteUser({ email: address })).link!;
      assert.equal(again.user?.id, invited.user?.id, "re-invite of the unconfirmed user");
      assert.equal(await preview(LinkType.INVITE, tokenOf(invited)), LinkState.REPLACED);
      const verified = await verify(LinkType.INVITE, tokenOf(again));
      assert.equal(verified.user?.id, invited.user?.id);
      await refused(users("grpc").inviteUser({ email: address }), Code.AlreadyExists, "email_exists");
      await refused(users("connect").inviteUser({ email: "bad" }), Code.InvalidArgument, "validation_failed", ["email"]);
    });

    test("the grpc-js listener serves the same service", async () => {
      const client = userClient(grpcUrlOf(server, "grpc-js"), "grpc", server.serviceKey);
      const address = email("grpcjs");
      const created = (await client.createUser({ email: address, password: PASSWORD })).user!;
      assert.equal(created.hasPassword, true);
      assert.deepEqual((await client.getUser({ key: { case: "email", value: address } })).user, created);
      await refused(client.createUser({ email: address }), Code.AlreadyExists, "email_exists");
      await refused(userClient(grpcUrlOf(server, "grpc-js"), "grpc", null).getUser({ key: { case: "id", value: created.id } }), Code.Unauthenticated, "credentials_missing");
    });

    for (const protocol of ["grpc", "connect"] as const) {
      test(`every method without the service role over ${protocol}: UNAUTHENTICATED, and nothing happens`, async () => {
        const target = (await users().createUser({ email: email(`guarded-${protocol}`) })).user!;
        for (const [key, reason] of [[null, "credentials_missing"], ["not-a-key", "credentials_invalid"]] as const) {
          const client = userClient(server.url, protocol, key);
          const fresh = email(`refused-${protocol}`);
          await refused(client.createUser({ email: fresh, password: PASSWORD }), Code.Unauthenticated, reason);
          await refused(client.getUser({ key: { case: "id", value: target.id } }), Code.Unauthenticated, reason);
          await refused(client.updateUser({ id: target.id, userMetadata: { hacked: true } }), Code.Unauthenticated, reason);
          await refused(client.deleteUser({ id: target.id }), Code.Unauthenticated, reason);
          await refused(client.inviteUser({ email: fresh }), Code.Unauthenticated, reason);
          await refused(users().getUser({ key: { case: "email", value: fresh } }), Code.NotFound, "user_not_found");
        }
        assert.deepEqual((await users().getUser({ key: { case: "id", value: target.id } })).user, target, "untouched");
      });
    }

    test("no password or password hash in any answer, log line or audit event", async () => {
      const address = email("secrets");
      const user = (await users().createUser({ email: address, password: PASSWORD })).user!;
      await users("connect").updateUser({ id: user.id, password: NEW_PASSWORD });
      await refused(users().updateUser({ id: user.id, password: "password1" }), Code.InvalidArgument, "weak_password");
      const stored = await server.store.users.findById(user.id);
      assert.match(stored?.passwordHash ?? "", /^\$argon2id\$/, "the hash is stored");
      const events = await server.store.audit.find({}, 10_000);
      assert.ok(events.some((event) => event.method === "UpdateUser"), "the audit trail has the calls");
      const haystacks = {
        answers: JSON.stringify(answers, (_, value: unknown) => (typeof value === "bigint" ? value.toString() : value)),
        logs: server.logs.join("\n"),
        audit: JSON.stringify(events),
      };
      for (const [where, text] of Object.entries(haystacks)) {
        for (const secret of [PASSWORD, NEW_PASSWORD, "password1", "$argon2", stored!.passwordHash!, "passwordHash"]) {
          assert.ok(!text.includes(secret), `${JSON.stringify(secret)} must not appear in ${where}`);
        }
      }
      assert.ok(answers.length > 20, "the scan saw the answers");
    });
  });
}

