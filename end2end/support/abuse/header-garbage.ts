// Malformed headers (cookies, Authorization, Origin and friends) on otherwise
// ordinary requests, and broken HTTP framing: request lines, header syntax,
// Content-Length and chunked bodies that lie.

import { big, build, form, FORM, tamper, type Expectation, type HttpGarbage } from './http-garbage';
import type { Header } from './raw-http';
import type { Random } from './random';
import type { Target } from './target';

function junkCookie(rng: Random, target: Target): Header {
  const value = rng.pick<() => string | Buffer>([
    () => `herald_vid=${rng.pick(['', 'zz', big('a', 32), big('0', 33), rng.junk(40).replace(/[\r\n;]/g, '')])}`,
    () =>
      `herald_session=${rng.pick([...target.badTokens, 'a.b.c', 'a.b', '', big('x', 4000), `${target.badTokens[0]}x`])}`,
    () => `herald_name=${rng.junk(60).replace(/[\r\n;]/g, '')}`,
    () => `herald_vid=${big('f', rng.int(4000, 60_000))}`,
    () => Array.from({ length: rng.int(50, 600) }, (_, i) => `c${i}=${i}`).join('; '),
    () => ';;;=;= ;herald_vid;herald_session=;=herald_vid',
    () =>
      Buffer.concat([
        Buffer.from('herald_vid='),
        Buffer.from([0xff, 0xfe, 0x80]),
        Buffer.from('; herald_session=\u0001'),
      ]),
    () =>
      `herald_vid=${target.visitor.vid}; herald_vid=${rng.bytes(16).toString('hex')}; herald_session=${target.badTokens[1]}`,
  ])();
  return ['Cookie', value];
}

function junkHeaders(rng: Random, target: Target): Header[] {
  const headers: Header[] = [];
  const count = rng.int(1, 3);
  for (let i = 0; i < count; i++) {
    headers.push(
      rng.pick<() => Header>([
        () => junkCookie(rng, target),
        () => junkCookie(rng, target),
        () => ['Authorization', rng.pick(['Bearer', `Bearer ${target.badTokens[0]}`, 'Basic !!!', big('A', 9000)])],
        () => [
          'Origin',
          rng.pick(['null', 'http://evil.example', '', 'http://127.0.0.1:1', 'file://', big('o', 3000)]),
        ],
        () => ['Accept', rng.junk(50).replace(/[\r\n]/g, '')],
        () => ['Accept-Encoding', 'gzip;q=abc, br;q=-1, *;q=9'],
        () => ['Range', 'bytes=junk-'],
        () => ['X-Forwarded-For', rng.junk(30).replace(/[\r\n]/g, '')],
        () => ['If-None-Match', big('"', 500)],
        () => ['Content-Type', 'text/html; charset=nonsense'],
      ])(),
    );
  }
  return headers;
}

export function headerGarbage(rng: Random, target: Target): HttpGarbage {
  const headers = junkHeaders(rng, target);
  const get = (path: string, expect: Expectation = 'page') =>
    build(target, 'header', `GET ${path.split('?')[0]} with junk headers`, expect, { method: 'GET', path, headers });
  return rng.weighted<() => HttpGarbage>([
    [6, () => get('/healthz')],
    [2, () => get('/notifications')],
    [1, () => get(`/r/${target.room}`)],
    [1, () => get('/no/such/page')],
    [
      2,
      () =>
        get(
          `/login?token=${encodeURIComponent(rng.pick([...target.badTokens, 'junk', '']))}&next=//evil.example`,
          'reject',
        ),
    ],
    [1, () => get(`/api/presence/${target.room}`, 'reject')],
    [
      2,
      () =>
        build(target, 'header', 'POST /add_message with junk headers', 'reject', {
          method: 'POST',
          path: '/add_message',
          headers: [...headers, ['Content-Type', FORM]],
          body: form({ room: target.room, name: 'Eve', body: 'junk headers', csrf: tamper(rng, target.visitor.csrf) }),
        }),
    ],
  ])();
}

/** Raw bytes; the write side ends after them, so a request cut short is seen as such. */
function rawBytes(label: string, bytes: Buffer | string, expect: Expectation = 'page'): HttpGarbage {
  return { kind: 'framing', label, expect, bytes: Buffer.from(bytes), halfClose: true };
}

export function framingGarbage(rng: Random, target: Target): HttpGarbage {
  const host = `Host: 127.0.0.1:${target.port}\r\nConnection: close\r\n`;
  // A publish without a key: whatever part of it Herald reads, it must not deliver.
  const body = JSON.stringify({ broadcast: true, message: 'framing garbage' });
  const publish = (label: string, headers: string, payload: string | Buffer = body) =>
    rawBytes(
      `framing: ${label}`,
      Buffer.concat([
        Buffer.from(`POST /api/publish HTTP/1.1\r\n${host}Content-Type: application/json\r\n${headers}\r\n`),
        Buffer.from(payload),
      ]),
      'reject',
    );
  return rng.pick<() => HttpGarbage>([
    () => rawBytes('framing: junk request line', `GARBAGE ${rng.junk(30)}\r\n\r\n`),
    () => rawBytes('framing: binary junk', rng.bytes(rng.int(1, 3000))),
    () => rawBytes('framing: no version', `GET /healthz\r\n${host}\r\n`),
    () =>
      rawBytes('framing: bad version', `GET /healthz HTTP/${rng.pick(['9.9', '1.x', '0.0', '11', ''])}\r\n${host}\r\n`),
    () => rawBytes('framing: unfinished head', `GET /healthz HTTP/1.1\r\n${host}X-Half: `),
    () => rawBytes('framing: header without colon', `GET /healthz HTTP/1.1\r\n${host}NoColonHere\r\n\r\n`),
    () => rawBytes('framing: space in header name', `GET /healthz HTTP/1.1\r\n${host}Bad Header: x\r\n\r\n`),
    () => rawBytes('framing: obs-fold', `GET /healthz HTTP/1.1\r\n${host}X-A: a\r\n  folded\r\n\r\n`),
    () =>
      rawBytes(
        'framing: NUL in header',
        Buffer.concat([
          Buffer.from(`GET /healthz HTTP/1.1\r\n${host}X-A: a`),
          Buffer.from([0, 1, 2]),
          Buffer.from('\r\n\r\n'),
        ]),
      ),
    () => rawBytes('framing: LF only', `GET /healthz HTTP/1.1\n${host.replace(/\r/g, '')}\n`),
    () => rawBytes('framing: huge URI', `GET /${big('a', rng.int(9000, 120_000))} HTTP/1.1\r\n${host}\r\n`),
    () =>
      rawBytes(
        'framing: huge header',
        `GET /healthz HTTP/1.1\r\n${host}X-Big: ${big('b', rng.int(70_000, 500_000))}\r\n\r\n`,
      ),
    () =>
      rawBytes(
        'framing: many headers',
        `GET /healthz HTTP/1.1\r\n${host}${Array.from({ length: rng.int(101, 400) }, (_, i) => `X-H${i}: ${i}\r\n`).join('')}\r\n`,
      ),
    () =>
      rawBytes(
        'framing: bad percent-encoding',
        `GET /r/%${rng.pick(['', 'z', 'zz', 'ff%fe'])} HTTP/1.1\r\n${host}\r\n`,
      ),
    () => publish('Content-Length -1', 'Content-Length: -1\r\n'),
    () => publish('Content-Length abc', 'Content-Length: abc\r\n'),
    () => publish('Content-Length huge', 'Content-Length: 99999999999999999999999\r\n'),
    () => publish('two Content-Lengths', `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 5}\r\n`),
    () => publish('Content-Length and chunked', `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`),
    () => publish('body shorter than Content-Length', `Content-Length: ${body.length + rng.int(1, 70_000)}\r\n`),
    () => publish('junk after the body', `Content-Length: ${body.length}\r\n`, `${body}${rng.junk(100)}\r\n\r\n`),
    () => publish('bad chunk size', 'Transfer-Encoding: chunked\r\n', `zz\r\n${body}\r\n0\r\n\r\n`),
    () => publish('huge chunk size', 'Transfer-Encoding: chunked\r\n', 'ffffffffffffffff\r\nabc'),
    () => publish('unfinished chunks', 'Transfer-Encoding: chunked\r\n', `5\r\n{"bro\r\n`),
    () => publish('Transfer-Encoding gzip', 'Transfer-Encoding: gzip\r\n'),
  ])();
}
