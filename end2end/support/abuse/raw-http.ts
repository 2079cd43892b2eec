// HTTP/1.1 written byte by byte over a TCP socket: the only way to send what
// fetch refuses to (a wrong Content-Length, raw bytes in headers, a broken
// request line, a body that stops early).

import { connect } from 'node:net';

/** How long a request may go unanswered before it counts as a hang. */
export const RAW_TIMEOUT_MS = 10_000;

export type Header = readonly [name: string, value: string | Buffer];

export interface RawRequest {
  method: string;
  path: string;
  headers?: readonly Header[];
  body?: string | Buffer;
  /** Sent instead of the body's length; `null`: no Content-Length at all. */
  contentLength?: string | null;
  /** Omit `Host`. */
  noHost?: boolean;
}

/** What came back: a status line, or the connection ended without one. */
export type RawOutcome =
  | { kind: 'status'; status: number; head: string }
  | { kind: 'closed' }
  | { kind: 'reset'; error: string }
  | { kind: 'timeout' };

/** Serializes `request` (with `Connection: close`, so one request per connection). */
export function encodeRequest(port: number, request: RawRequest): Buffer {
  const body = request.body === undefined ? Buffer.alloc(0) : Buffer.from(request.body);
  const lines: Buffer[] = [Buffer.from(`${request.method} ${request.path} HTTP/1.1\r\n`)];
  const header = (name: string, value: string | Buffer) =>
    lines.push(Buffer.concat([Buffer.from(`${name}: `), Buffer.from(value), Buffer.from('\r\n')]));
  if (!request.noHost) header('Host', `127.0.0.1:${port}`);
  header('Connection', 'close');
  for (const [name, value] of request.headers ?? []) header(name, value);
  const length = request.contentLength === undefined ? String(body.length) : request.contentLength;
  if (length !== null && (request.body !== undefined || request.contentLength !== undefined)) {
    header('Content-Length', length);
  }
  lines.push(Buffer.from('\r\n'), body);
  return Buffer.concat(lines);
}

/**
 * Writes `bytes` on a new connection and reads the response's status line.
 * `halfClose` ends the write side afterwards, for requests that promise more
 * than they send: the server sees the end instead of waiting for the rest.
 */
export function exchange(port: number, bytes: Buffer, halfClose = false): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (outcome: RawOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), RAW_TIMEOUT_MS);
    socket.on('connect', () => {
      socket.write(bytes);
      if (halfClose) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const line = received.indexOf('\r\n');
      if (line < 0) return;
      const head = received.subarray(0, line).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      finish(m ? { kind: 'status', status: Number(m[1]), head } : { kind: 'reset', error: `not HTTP: ${head}` });
    });
    socket.on('error', (err) => finish({ kind: 'reset', error: err.message }));
    socket.on('close', () => finish({ kind: 'closed' }));
  });
}
