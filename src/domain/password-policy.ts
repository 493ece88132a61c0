// What makes a signup password acceptable. Follows NIST SP 800-63B: a minimum
// length, a generous maximum, no composition rules, and a block-list of the
// passwords attackers try first (plus the address itself).

export const MAX_PASSWORD_LENGTH = 256;

const COMMON_PASSWORDS = new Set([
  "password", "password1", "password123", "passw0rd", "12345678", "123456789", "1234567890",
  "11111111", "00000000", "87654321", "qwertyui", "qwerty123", "qwertyuiop", "1q2w3e4r",
  "1qaz2wsx", "abc12345", "abcd1234", "iloveyou", "sunshine", "princess", "football",
  "baseball", "welcome1", "welcome123", "letmein1", "trustno1", "superman", "starwars",
  "dragon123", "monkey123", "whatever", "changeme", "administrator", "admin123",
  "qazwsxedc", "zaq12wsx", "asdfghjk", "aaaaaaaa", "master123", "secret123",
]);

export interface PasswordPolicy {
  readonly minLength: number;
}

/**
 * Why a password is too weak, or undefined when it is acceptable. (Length
 * beyond MAX_PASSWORD_LENGTH is malformed input, checked by validation.)
 */
export function passwordWeakness(password: string, email: string, policy: PasswordPolicy): string | undefined {
  const length = [...password].length;
  if (length < policy.minLength) return `must be at least ${policy.minLength} characters`;
  const lowered = password.toLowerCase();
  if (COMMON_PASSWORDS.has(lowered)) return "is one of the most common passwords";
  if (new Set(password).size === 1) return "repeats a single character";
  const local = email.slice(0, email.indexOf("@"));
  if (lowered === email || (local.length >= 4 && lowered === local)) return "must not be the email address";
  return undefined;
}
