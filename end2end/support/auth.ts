// The secrets the `herald` fixture starts Herald with, and user tokens for
// them: valid ones from Herald's own `herald token` command, and broken ones
// (expired, wrong secret, `alg: none`) built here with node's crypto.

import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { HERALD_BINARY } from './herald-server';

/** Test-only HS256 secrets (each >= 32 characters): the first signs, both verify. */
export const TOKEN_SECRETS = [
  'e2e-token-secret-current-0123456789abcdef',
  'e2e-token-secret-previous-0123456789abcdef',
] as const;

/** The one publish API key (>= 16 characters) the fixture configures. */
export const API_KEY = 'e2e-api-key-0123456789abcdef';

/** The environment that configures them, as `HERALD_*` variables. */
export const AUTH_ENV = {
  HERALD_TOKEN_SECRETS: TOKEN_SECRETS.join(','),
  HERALD_API_KEYS: API_KEY,
} as const;

/** How long `herald token` may take before the test fails. */
const TOKEN_COMMAND_TIMEOUT_MS = 15_000;
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface TokenRequest {
  /** The user id (`sub`). */
  sub: string;
  /** The display name (`name`). */
  name?: string;
  /** `90s`, `15m`, `1h`, `7d` (default `1h`). */
  ttl?: string;
  /** Private rooms (patterns) the token grants: its `rooms` claim. */
  rooms?: string[];
}

/**
 * A valid token, printed by `herald token --sub … [--name …] --ttl …` with the
 * fixture's secrets: the same command an operator runs.
 */
export function userToken({ sub, name, ttl = '1h', rooms = [] }: TokenRequest): Promise<string> {
  const args = [
    'token',
    '--sub',
    sub,
    ...(name === undefined ? [] : ['--name', name]),
    ...rooms.flatMap((room) => ['--room', room]),
    '--ttl',
    ttl,
  ];
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...AUTH_ENV,
    // Should an old binary without the subcommand start serving instead, it
    // must not take port 3000 or find a database.
    HERALD_ADDR: '127.0.0.1:0',
    HERALD_MONGO_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1000',
  };
  const command = `${HERALD_BINARY} ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile(HERALD_BINARY, args, { env, timeout: TOKEN_COMMAND_TIMEOUT_MS }, (error, stdout, stderr) => {
      const printed = String(stdout).trim();
      if (error || !JWT.test(printed)) {
        // An old build without the subcommand tries to serve instead, and fails.
        const why = error ? `failed: ${error.message}` : 'printed no token';
        reject(new Error(`\`${command}\` ${why} (a build without \`herald token\`?):\n${stdout}\n${stderr}`));
      } else {
        resolve(printed);
      }
    });
  });
}

function base64url(value: string | Buffer): string {
  return Buffer.from(value).toString('base64url');
}

/** Seconds since the Unix epoch. */
export function nowSecs(): number {
  return Math.floor(Date.now() / 1000);
}

/** Signs `claims` with HMAC-SHA256 under `secret`, with header `alg` (HS256 unless told). */
export function signToken(
  claims: Record<string, unknown>,
  { secret = TOKEN_SECRETS[0], alg = 'HS256' }: { secret?: string; alg?: string } = {},
): string {
  const signingInput = `${base64url(JSON.stringify({ alg, typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/** Signed with the right secret, but expired an hour ago (far beyond Herald's 30 s leeway). */
export function expiredToken(sub: string): string {
  return signToken({ sub, exp: nowSecs() - 3600, iat: nowSecs() - 7200 });
}

/** Valid claims, signed with a secret Herald does not know. */
export function forgedToken(sub: string): string {
  return signToken({ sub, exp: nowSecs() + 3600 }, { secret: 'not-a-herald-secret-not-a-herald-secret' });
}

/** `{"alg": "none"}` with valid claims and an empty signature. */
export function algNoneToken(sub: string): string {
  const header = base64url(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  return `${header}.${base64url(JSON.stringify({ sub, exp: nowSecs() + 3600 }))}.`;
}
