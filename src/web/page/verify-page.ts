import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { LinkState, type PreviewLinkResponse, type VerifyLinkResponse } from "../../../gen/authlink/v1/admin_auth_service_pb.js";
import { h, show } from "./dom.js";
import { isHttpUrl, isPageLinkType, readLinkParams, type PageLinkType } from "./link-params.js";
import { classifyFailure, createAuthlinkClient, linkTypeFromProto, linkTypeToProto, type CallFailure } from "./rpc.js";
import { CODE_TYPE_CHOICES, EMAIL_CHANGE_PENDING, formatMoment, formatWait, formatWhen, LINK_WORDING } from "./wording.js";

// The verify page's script. On load it reads the link from the address,
// removes it from the address bar (and so from history), asks PreviewLink
// what the link is and shows that with one button. Nothing is redeemed until
// the person presses the button (or submits the code form): loading the page
// or running this script — as mail scanners do — consumes nothing.
//
// Nothing from the address or from an answer is ever inserted as HTML (see
// dom.ts), and the page only ever navigates to an http(s) redirect target
// that the server returned for the redeemed link.

interface Link {
  readonly token: string;
  readonly type: PageLinkType;
}

const container = document.getElementById("app");
const product = document.body.dataset.product ?? "";
const client = createAuthlinkClient(location.origin);
/** Bumped on every (re)start, so that a late answer for an earlier link is dropped. */
let generation = 0;

function start(): void {
  const params = readLinkParams(location.hash, location.search);
  if (location.hash !== "" || location.search !== "") history.replaceState(null, "", location.pathname);
  const run = ++generation;
  if (params.kind === "invalid") showInvalid(params.type);
  else void preview(params, run);
}

async function preview(link: Link, run: number): Promise<void> {
  showView(h("p", { className: "lead" }, "Checking your link…"));
  let answer: PreviewLinkResponse;
  try {
    answer = await client.previewLink({ type: linkTypeToProto(link.type), token: link.token });
  } catch (error) {
    if (run === generation) showPreviewFailure(link, classifyFailure(error), run);
    return;
  }
  if (run === generation) showState(link, answer);
}

function showState(link: Link, answer: PreviewLinkResponse): void {
  const changed = answer.stateChangedAt;
  switch (answer.state) {
    case LinkState.VALID:
      return showValid(link, answer);
    case LinkState.EXPIRED:
      return showEnded("This link has expired", `This link expired${when(answer.expiresAt)}.`, "Ask for a new link.");
    case LinkState.USED:
      return showEnded(
        "This link was already used",
        `This link was already used${when(changed)}.`,
        "Each link works only once. If you still need it, ask for a new link.",
      );
    case LinkState.REPLACED:
      return showEnded(
        "A newer link was sent",
        `A newer link was sent${when(changed)}, so this one no longer works.`,
        "Use the link in the most recent email, or ask for a new link.",
      );
    case LinkState.REVOKED:
      return showEnded("This link was cancelled", `This link was cancelled${when(changed)} and no longer works.`, "Ask for a new link.");
    default:
      return showInvalid(link.type);
  }
}

function when(timestamp: Timestamp | undefined): string {
  return timestamp ? ` ${formatWhen(timestampDate(timestamp))}` : "";
}

function showValid(link: Link, answer: PreviewLinkResponse): void {
  const type = linkTypeFromProto(answer.type) ?? link.type;
  const wording = LINK_WORDING[type];
  const status = statusLine();
  const button = h("button", { className: "primary", attrs: { type: "button" } }, wording.button);
  button.addEventListener("click", (event) => {
    // A click a script made up (a scanner "pressing" every button) is not a person.
    if (!event.isTrusted || button.disabled) return;
    void redeem(link, button, status);
  });
  showView(
    h("h1", {}, wording.heading(product)),
    answer.maskedEmail !== "" &&
      h("p", { className: "lead" }, "This link is for ", h("strong", { className: "address" }, answer.maskedEmail), "."),
    answer.redirectHost !== "" && h("p", {}, "Afterwards you will continue to ", h("strong", {}, answer.redirectHost), "."),
    button,
    status,
    answer.expiresAt && h("p", { className: "muted" }, `The link works until ${formatMoment(timestampDate(answer.expiresAt))}.`),
    codeFormLink(type, () => showValid(link, answer)),
  );
}

async function redeem(link: Link, button: HTMLButtonElement, status: HTMLElement): Promise<void> {
  const label = button.textContent ?? "";
  button.disabled = true;
  button.textContent = "One moment…";
  setStatus(status, "");
  const run = generation;
  let result: VerifyLinkResponse;
  try {
    result = await client.verifyLink({ type: linkTypeToProto(link.type), credential: { case: "token", value: link.token } });
  } catch (error) {
    if (run !== generation) return;
    const failure = classifyFailure(error);
    if (failure.kind === "refused" || failure.kind === "invalid") {
      // VerifyLink says only "invalid or expired"; PreviewLink says which.
      return void explainRefusal(link, run);
    }
    button.textContent = label;
    retryLater(button, status, failure);
    return;
  }
  if (run === generation) finish(result, link.type);
}

async function explainRefusal(link: Link, run: number): Promise<void> {
  try {
    const answer = await client.previewLink({ type: linkTypeToProto(link.type), token: link.token });
    if (run !== generation) return;
    // Still "valid" after a refusal: the link is not what it claims (e.g. another type).
    if (answer.state === LinkState.VALID) showInvalid(link.type);
    else showState(link, answer);
  } catch {
    if (run === generation) showInvalid(link.type);
  }
}

/** A rate limit or an outage: say so, and let the person press again (after the wait). */
function retryLater(button: HTMLButtonElement, status: HTMLElement, failure: CallFailure): void {
  if (failure.kind === "rate_limited") {
    setStatus(status, `Too many attempts. Try again ${formatWait(failure.retryAfterSeconds)}.`, true);
    setTimeout(() => (button.disabled = false), failure.retryAfterSeconds * 1000);
  } else {
    setStatus(status, "We could not reach the server. Check your connection and try again.", true);
    button.disabled = false;
  }
}

function finish(result: VerifyLinkResponse, fallbackType: PageLinkType): void {
  const target = redirectTarget(result.redirectTo, result.assertion);
  if (target) {
    showView(h("h1", {}, "Done"), h("p", { className: "lead" }, `Taking you to ${target.host}…`));
    location.replace(target.href);
    return;
  }
  const type = linkTypeFromProto(result.verificationType) ?? fallbackType;
  const done = type === "email_change" && result.emailChangePending ? EMAIL_CHANGE_PENDING : LINK_WORDING[type].done(product);
  showView(h("div", { className: "tick", attrs: { "aria-hidden": "true" } }), h("h1", {}, done.heading), h("p", { className: "lead" }, done.text));
}

/**
 * Where to go after a redemption: the link's own redirect target (as the
 * server returned it) with the assertion in the fragment, which never reaches
 * a server log. An existing fragment is replaced: the target was validated
 * against the allow-list without one mattering, and the assertion must be the
 * one thing the relying page reads there. Only http(s) targets are followed.
 */
function redirectTarget(redirectTo: string, assertion: string): URL | undefined {
  if (redirectTo === "" || !isHttpUrl(redirectTo, 2048)) return undefined;
  const url = new URL(redirectTo);
  url.hash = assertion === "" ? "" : new URLSearchParams({ authlink_assertion: assertion }).toString();
  return url;
}

function showEnded(heading: string, text: string, next: string): void {
  showView(h("h1", {}, heading), h("p", { className: "lead" }, text), h("p", {}, next));
}

function showInvalid(type: PageLinkType | undefined): void {
  showView(
    h("h1", {}, "This link is not valid"),
    h("p", { className: "lead" }, "It may be incomplete or may have been changed."),
    h("p", {}, "Open the whole link from the email again, or ask for a new link."),
    codeFormLink(type, () => showInvalid(type)),
  );
}

function showPreviewFailure(link: Link, failure: CallFailure, run: number): void {
  if (failure.kind === "refused" || failure.kind === "invalid") return showInvalid(link.type);
  const again = h("button", { className: "primary", attrs: { type: "button" } }, "Try again");
  again.addEventListener("click", () => {
    if (run === generation) void preview(link, ++generation);
  });
  if (failure.kind === "rate_limited") {
    again.disabled = true;
    setTimeout(() => (again.disabled = false), failure.retryAfterSeconds * 1000);
    showView(h("h1", {}, "Too many attempts"), h("p", { className: "lead" }, `Please try again ${formatWait(failure.retryAfterSeconds)}.`), again);
  } else {
    showView(
      h("h1", {}, "We could not check this link"),
      h("p", { className: "lead" }, "The server did not answer. Check your connection and try again."),
      again,
    );
  }
}

function codeFormLink(type: PageLinkType | undefined, back: () => void): HTMLElement {
  return h(
    "p",
    { className: "alternative" },
    h("button", { className: "link", attrs: { type: "button" }, onClick: () => showCodeForm(type, back) }, "Enter the code from the email instead"),
  );
}

function showCodeForm(knownType: PageLinkType | undefined, back: () => void): void {
  const email = h("input", {
    id: "code-email",
    attrs: { type: "email", name: "email", autocomplete: "email", maxlength: "254", required: "", spellcheck: "false" },
  });
  const code = h("input", {
    id: "code-otp",
    attrs: { type: "text", name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "12", pattern: "[0-9 ]{6,12}", required: "" },
  });
  const select =
    knownType === undefined
      ? h(
          "select",
          { id: "code-type", attrs: { name: "type" } },
          ...CODE_TYPE_CHOICES.map((choice) => h("option", { attrs: { value: choice.type } }, choice.label)),
        )
      : undefined;
  const status = statusLine();
  const submit = h("button", { className: "primary", attrs: { type: "submit" } }, "Continue");
  const form = h(
    "form",
    // The script submits it; should it ever not, a POST keeps the code out of
    // URLs and logs, and the page answers it 405.
    { className: "code-form", attrs: { method: "post", novalidate: "" } },
    h("label", { attrs: { for: "code-email" } }, "Email address"),
    email,
    h("label", { attrs: { for: "code-otp" } }, "Code"),
    code,
    select && h("label", { attrs: { for: "code-type" } }, "What is the code for?"),
    select,
    submit,
    status,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!event.isTrusted || submit.disabled) return;
    const type = knownType ?? (isPageLinkType(select?.value) ? select.value : undefined);
    const address = email.value.trim();
    const digits = code.value.replace(/\s+/g, "");
    if (!type || address.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(address) || !/^\d{6,10}$/.test(digits)) {
      setStatus(status, "Enter the address the email was sent to and the 6 to 10 digit code from it.", true);
      return;
    }
    void redeemCode(type, address, digits, submit, status);
  });
  showView(
    h("h1", {}, "Enter your code"),
    h("p", { className: "lead" }, "Type the address the email was sent to and the code it contains."),
    form,
    h("p", { className: "alternative" }, h("button", { className: "link", attrs: { type: "button" }, onClick: back }, "Back")),
  );
}

async function redeemCode(type: PageLinkType, email: string, otp: string, submit: HTMLButtonElement, status: HTMLElement): Promise<void> {
  submit.disabled = true;
  setStatus(status, "");
  const run = generation;
  let result: VerifyLinkResponse;
  try {
    result = await client.verifyLink({ type: linkTypeToProto(type), credential: { case: "emailOtp", value: { email, otp } } });
  } catch (error) {
    if (run !== generation) return;
    const failure = classifyFailure(error);
    if (failure.kind === "refused") {
      setStatus(status, "That code did not work. Check the address and the code. After too many wrong codes the code stops working, but the link in the email still does.", true);
      submit.disabled = false;
    } else if (failure.kind === "invalid") {
      setStatus(status, "Enter the address the email was sent to and the 6 to 10 digit code from it.", true);
      submit.disabled = false;
    } else {
      retryLater(submit, status, failure);
    }
    return;
  }
  if (run === generation) finish(result, type);
}

function statusLine(): HTMLElement {
  return h("p", { className: "status", attrs: { role: "status", "aria-live": "polite" } });
}

function setStatus(status: HTMLElement, text: string, isError = false): void {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showView(...nodes: (Node | string | false | undefined)[]): void {
  if (container) show(container, ...nodes.filter((node): node is Node => node instanceof Node));
}

window.addEventListener("hashchange", start);
start();
