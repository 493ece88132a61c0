import type { Clock } from "../../src/domain/clock.js";

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  #now: number;

  constructor(start: Date | string = "2030-01-01T00:00:00.000Z") {
    this.#now = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  set(date: Date): void {
    this.#now = date.getTime();
  }
}
