// Time comes from a Clock so that expiry can be tested at its exact boundary.

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
