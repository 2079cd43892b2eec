// Malformed HTTP requests, and the no-JavaScript forms' share of them
// (POST /add_message, /notifications/read, /logout). Each is built so that
// it must be refused: nothing here may store or deliver anything, whatever
// Herald makes of it. The publish API's are in publish-garbage.ts, broken
// headers and framing in header-garbage.ts.

import { encodeRequest, type Header, type RawRequest } from './raw-http';
import type { Random } from './random';
import type { Target } from './target';

/**
 * What a request must get back, besides never a 5xx other than 503 (and a
 * connection closed without an answer is always acceptable for garbage):
 * - `reject`: a 4xx (or 503), never a 2xx or 3xx: nothing was done;
 * - `page`: any status: junk a route may ignore (a GET with a bad cookie
 *   still gets its page; a lenient parser may read a bare-LF request).
 */
export type Expectation = 'reject' | 'page';

export interface HttpGarbage {
  kind: 'form' | 'publish' | 'header' | 'framing' | 'polling';
  label: string;
  bytes: Buffer;
  expect: Expectation;
  /** End the write side after sending (for requests that promise more than they send). */
  halfClose?: boolean;
  /** The only statuses that are right (besides 429 and 503), when the answer is that precise. */
  statuses?: readonly number[];
}

export const FORM = 'application/x-www-form-urlencoded';
export const JSON_TYPE = 'application/json';

export function build(
  target: Target,
  kind: HttpGarbage['kind'],
  label: string,
  expect: Expectation,
  request: RawRequest,
  halfClose = false,
): HttpGarbage {
  return { kind, label, expect, bytes: encodeRequest(target.port, request), halfClose };
}

export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

/** Every byte of `value` (as UTF-8; a lone surrogate as U+FFFD) percent-encoded but `A-Za-z0-9-._~`. */
function percentEncode(value: string): string {
  const plain = (byte: number) => /[A-Za-z0-9._~-]/.test(String.fromCharCode(byte));
  return [...Buffer.from(value, 'utf8')]
    .map((byte) => (plain(byte) ? String.fromCharCode(byte) : `%${byte.toString(16).padStart(2, '0').toUpperCase()}`))
    .join('');
}

/** `unit` repeated and cut to `length` UTF-16 units (use single-unit characters). */
export function big(unit: string, length: number): string {
  return unit.repeat(Math.ceil(length / unit.length)).slice(0, length);
}

/** `value` with one character changed, truncated, padded or emptied. */
export function tamper(rng: Random, value: string): string {
  return rng.pick([
    () => value.slice(0, -1) + (value.endsWith('0') ? '1' : '0'),
    () => value.slice(0, rng.int(0, value.length - 1)),
    () => value + rng.junk(8) + 'x',
    () => '',
    () => big('A', rng.int(200, 12_000)),
    () => value.toUpperCase() + '!',
    () => rng.junk(40) + 'z',
  ])();
}

/** Text a form's `body` or `name` may not hold (each refused however Herald trims it). */
function invalidText(rng: Random, field: 'body' | 'name'): string {
  const limit = field === 'body' ? 2000 : 32;
  return rng.pick([
    () => '',
    () => ' \t\r\n '.slice(0, rng.int(1, 5)),
    () => `a${rng.pick(['\u0000', '\u0001', '\u001b', '\u007f', '\u0085', '\u000b'])}b`,
    // Characters, not UTF-16 units: one emoji is one character of the limit.
    () => rng.pick(['x', 'é', '漢', '😀']).repeat(limit + rng.int(1, field === 'body' ? 4000 : 500)),
    ...(field === 'name' ? [() => 'a\nb', () => 'tab\there'] : []),
  ])();
}

export function formGarbage(rng: Random, target: Target): HttpGarbage {
  const { vid, csrf } = target.visitor;
  const room = target.room;
  const cookie = (id: string): Header => ['Cookie', `herald_vid=${id}`];
  const path = rng.weighted([
    [6, '/add_message'],
    [2, '/notifications/read'],
    [2, '/logout'],
  ] as const);
  const post = (label: string, request: Partial<RawRequest>) =>
    build(target, 'form', `${path} ${label}`, 'reject', { method: 'POST', path, ...request });
  const valid = { room, name: 'Eve', body: 'garbage must not be stored', client_id: `abuse${rng.int(1e6, 9e6)}` };
  // A logout with the real token would succeed (303): there it is always wrong.
  const token = path === '/logout' ? tamper(rng, csrf) : csrf;
  // For bodies written by hand: a tampered token may hold `&` (or `+`, `%`),
  // and `csrf=<token>&junk` unencoded would read as the real token.
  const raw = percentEncode(token);

  const variant = rng.int(0, 9);
  switch (variant) {
    case 0:
      return post('no body', { headers: [cookie(vid)] });
    case 1: {
      const type = rng.pick([
        JSON_TYPE,
        'text/plain',
        'multipart/form-data; boundary=zz',
        `${FORM}; charset=utf-16`,
        '',
      ]);
      return post(`content-type ${type || '(empty)'}`, {
        headers: [cookie(vid), ['Content-Type', type]],
        body: type === JSON_TYPE ? JSON.stringify({ ...valid, csrf: token }) : rng.junk(200),
      });
    }
    case 2: {
      const body = rng.pick(['%zz', '%', '&&&', '====', 'body=%E0%A4%A', 'a=%FF%FE', `csrf=${raw}%`, rng.junk(300)]);
      return post('broken urlencoding', { headers: [cookie(vid), ['Content-Type', FORM]], body });
    }
    case 3: {
      // Invalid UTF-8 straight in the body.
      const body = Buffer.concat([
        Buffer.from(`room=${room}&body=`),
        Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
        Buffer.from(`&csrf=${raw}`),
      ]);
      return post('invalid UTF-8', { headers: [cookie(vid), ['Content-Type', FORM]], body });
    }
    case 4: {
      const fields: Record<string, string> = { ...valid, csrf: token };
      const drop = rng.pick(['csrf', 'csrf', 'room', 'body'] as const);
      delete fields[drop];
      return post(`without ${drop}`, { headers: [cookie(vid), ['Content-Type', FORM]], body: form(fields) });
    }
    case 5:
      return post('tampered csrf', {
        headers: [cookie(vid), ['Content-Type', FORM]],
        body: form({ ...valid, csrf: tamper(rng, csrf) }),
      });
    case 6: {
      // A real token, with another browser's cookie (or none, or junk).
      const other = rng.pick([rng.bytes(16).toString('hex'), '', 'not-hex-at-all', big('f', 5000)]);
      const headers: Header[] = other === '' ? [] : [cookie(other)];
      return post('csrf of another visitor', {
        headers: [...headers, ['Content-Type', FORM]],
        body: form({ ...valid, csrf }),
      });
    }
    case 7:
      return build(target, 'form', `${path} oversized`, 'reject', {
        method: 'POST',
        path,
        headers: [cookie(vid), ['Content-Type', FORM]],
        body: form({ ...valid, csrf: token, body: big('x', rng.int(66_000, 200_000)) }),
      });
    case 8: {
      // Duplicated fields: whichever wins, the csrf is wrong.
      const body = `room=${room}&room=Bad&body=a&body=&csrf=${percentEncode(tamper(rng, csrf))}&csrf=`;
      return post('duplicated fields', { headers: [cookie(vid), ['Content-Type', FORM]], body });
    }
    default: {
      if (path !== '/add_message') {
        // The right csrf for /notifications/read (not logged in: 401); junk seq.
        const body =
          path === '/logout'
            ? form({ csrf: tamper(rng, csrf) })
            : form({
                csrf: token,
                seq: rng.pick(['abc', '-1', '1.5', '99999999999999999999999', '']),
                all: rng.pick(['yes', '1', '']),
              });
        return post('junk fields', { headers: [cookie(vid), ['Content-Type', FORM]], body });
      }
      // A valid csrf, and a name or body that breaks the rules: 422, nothing stored.
      const field = rng.pick(['body', 'name', 'client_id'] as const);
      const value =
        field === 'client_id' ? rng.pick(['short', big('x', 65), 'has space1', 'ünïcödé1']) : invalidText(rng, field);
      return post(`invalid ${field}`, {
        headers: [cookie(vid), ['Content-Type', FORM]],
        body: form({ ...valid, csrf, [field]: value }),
      });
    }
  }
}
