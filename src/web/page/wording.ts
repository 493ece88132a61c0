import type { PageLinkType } from "./link-params.js";

// Everything the page says, in one place: what each kind of link does, what
// its button says, and what happened once it worked.

export interface LinkWording {
  /** The heading of a valid link: what pressing the button will do. */
  readonly heading: (product: string) => string;
  readonly button: string;
  /** The heading and text once the link worked and there is nowhere to go. */
  readonly done: (product: string) => { readonly heading: string; readonly text: string };
}

export const LINK_WORDING: Readonly<Record<PageLinkType, LinkWording>> = {
  magiclink: {
    heading: (product) => `Sign in to ${product}`,
    button: "Sign in",
    done: (product) => ({ heading: "You are signed in", text: `Your sign-in is confirmed. You can close this tab and go back to ${product}.` }),
  },
  signup: {
    heading: () => "Confirm your address",
    button: "Confirm my address",
    done: (product) => ({ heading: "Address confirmed", text: `Thank you. You can close this tab and go back to ${product}.` }),
  },
  recovery: {
    heading: () => "Set a new password",
    button: "Continue",
    done: (product) => ({ heading: "Link confirmed", text: `Go back to ${product} to choose your new password.` }),
  },
  invite: {
    heading: () => "Accept the invitation",
    button: "Accept the invitation",
    done: (product) => ({ heading: "Invitation accepted", text: `Welcome. You can close this tab and go back to ${product}.` }),
  },
  email_change: {
    heading: () => "Confirm your new address",
    button: "Confirm the change",
    done: (product) => ({ heading: "Address changed", text: `Your address has been changed. You can go back to ${product}.` }),
  },
};

export const EMAIL_CHANGE_PENDING = {
  heading: "One more step",
  text: "This address is confirmed. Now open the link we sent to your other address to finish the change.",
};

/** The select of the code form, when the link did not say what it is. */
export const CODE_TYPE_CHOICES: readonly { readonly type: PageLinkType; readonly label: string }[] = [
  { type: "magiclink", label: "Sign in" },
  { type: "signup", label: "Confirm a new account" },
  { type: "recovery", label: "Reset a password" },
  { type: "invite", label: "Accept an invitation" },
  { type: "email_change", label: "Change an address" },
];

/** "10:02" today, "3 Jan 2030, 10:02" on another day, in the reader's locale and time zone. */
export function formatMoment(date: Date, now: Date = new Date()): string {
  const sameDay = date.toDateString() === now.toDateString();
  const format = sameDay
    ? new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" })
    : new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  return format.format(date);
}

/** "at 10:02" today, "on 3 Jan 2030, 10:02" on another day. */
export function formatWhen(date: Date, now: Date = new Date()): string {
  return `${date.toDateString() === now.toDateString() ? "at" : "on"} ${formatMoment(date, now)}`;
}

/** "in 42 seconds", "in 3 minutes". */
export function formatWait(seconds: number): string {
  if (seconds < 90) return `in ${seconds} ${seconds === 1 ? "second" : "seconds"}`;
  const minutes = Math.ceil(seconds / 60);
  return `in ${minutes} minutes`;
}
