import argon2 from "argon2";

// Passwords are stored as argon2id PHC strings. Parameters come from
// configuration and must meet at least one of OWASP's argon2id settings
// (memory KiB, iterations): (47104, 1), (19456, 2), (12288, 3), (9216, 4),
// (7168, 5).

export interface Argon2Params {
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
}

const OWASP_ARGON2ID_MINIMUMS: readonly (readonly [memoryKiB: number, iterations: number])[] = [
  [47104, 1],
  [19456, 2],
  [12288, 3],
  [9216, 4],
  [7168, 5],
];

export const DEFAULT_ARGON2_PARAMS: Argon2Params = { memoryKiB: 19456, iterations: 2, parallelism: 1 };

/** Whether parameters are at least as strong as one of OWASP's argon2id settings. */
export function meetsOwaspMinimum(params: Argon2Params): boolean {
  return OWASP_ARGON2ID_MINIMUMS.some(([m, t]) => params.memoryKiB >= m && params.iterations >= t);
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(phc: string, password: string): Promise<boolean>;
}

export function createArgon2Hasher(params: Argon2Params): PasswordHasher {
  return {
    hash: async (password) =>
      standardPhc(
        await argon2.hash(password, {
          type: argon2.argon2id,
          memoryCost: params.memoryKiB,
          timeCost: params.iterations,
          parallelism: params.parallelism,
        }),
      ),
    // Hashes stored before the PHC order was fixed (m,p,t) still verify.
    verify: (phc, password) => argon2.verify(phc, password),
  };
}

/**
 * The PHC string in the standard parameter order `m=…,t=…,p=…`. The argon2
 * package writes `m=…,p=…,t=…`, which other argon2 libraries refuse, so a
 * stored hash could not move to another stack.
 */
export function standardPhc(phc: string): string {
  return phc.replace(/\$m=(\d+),p=(\d+),t=(\d+)\$/, (_, m: string, p: string, t: string) => `$m=${m},t=${t},p=${p}$`);
}
