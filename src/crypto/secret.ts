import { inspect } from "node:util";

// A Secret holds a key or password from configuration. It prints as
// "[redacted]" through String(), JSON.stringify and console/inspect, so that a
// config object dropped into a log line cannot leak it.
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself; call only where it is used, never where it is shown. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }

  [inspect.custom](): string {
    return "[redacted]";
  }
}
