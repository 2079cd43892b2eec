import { randomBytes } from 'node:crypto';

/** A random token for unique room names and message bodies: `2 * bytes` hex digits. */
export function token(bytes = 6): string {
  return randomBytes(bytes).toString('hex');
}
