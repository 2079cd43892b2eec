// Malformed calls to POST /api/publish: refused bodies (with the right key),
// wrong content types, oversized bodies, and valid publishes with a wrong or
// missing key. Nothing may be delivered or stored.

import { big, build, FORM, JSON_TYPE, type HttpGarbage } from './http-garbage';
import type { Header, RawRequest } from './raw-http';
import type { Random } from './random';
import type { Target } from './target';

/** JSON bodies the publish API must refuse even with the right key. */
function refusedPublish(rng: Random, room: string): string {
  return rng.pick([
    () => '{',
    () => '',
    () => 'null',
    () => '[]',
    () => '"broadcast"',
    () => rng.junk(200),
    () => JSON.stringify({ message: 'no target' }),
    () => JSON.stringify({ broadcast: false, message: 'x' }),
    () => JSON.stringify({ broadcast: 'yes', message: 'x' }),
    () => JSON.stringify({ users: [], message: 'x' }),
    () => JSON.stringify({ broadcast: true }),
    () => JSON.stringify({ broadcast: true, data: 1, message: 'x' }),
    () => JSON.stringify({ broadcast: true, user: 'u1', message: 'x' }),
    () => JSON.stringify({ room, user: 'u1', message: 'x' }),
    () => JSON.stringify({ user: rng.pick(['bad id', '', big('u', 129), 'ü', 'a/b']), message: 'x' }),
    () => JSON.stringify({ users: ['ok', 'bad id'], message: 'x' }),
    () => JSON.stringify({ users: Array.from({ length: 1001 }, (_, i) => `u${i}`), message: 'x' }),
    () => JSON.stringify({ room: rng.pick(['Bad', '', big('r', 65), '../x', 'a b']), message: 'x' }),
    () => JSON.stringify({ room, message: rng.pick(['', '   ', '\r\n', 'a\u0000b', 'a\u001bb', big('m', 2001)]) }),
    () => JSON.stringify({ broadcast: true, message: 'x', event: rng.pick(['', 'bad event', big('e', 65), '<x>']) }),
    () => JSON.stringify({ broadcast: true, message: 'x', [rng.pick(['zzz', 'Broadcast', '__proto__', 'id'])]: 1 }),
    () => JSON.stringify({ broadcast: true, message: rng.pick([1, null, [], {}, true]) }),
    () => JSON.stringify({ broadcast: true, data: big('d', rng.int(16_500, 60_000)) }),
    () => `{"broadcast":true,"data":${'['.repeat(rng.int(200, 20_000))}`,
    () => `{"broadcast":true,"data":${'['.repeat(300)}${']'.repeat(300)}}`,
    () => `{"broadcast":true,"message":"\\ud800 ${rng.junk(10).replace(/["\\]/g, '')}`,
  ])();
}

/** Authorization headers that are not the key (`key` is the real one). */
function wrongAuthorization(rng: Random, key: string): Header[] {
  const value = rng.pick([
    'Bearer',
    'Bearer ',
    `Bearer ${key}x`,
    `Bearer x${key}`,
    `Bearer ${key.slice(0, -1)}`,
    `Bearer ${key.toUpperCase()}`,
    `Basic ${Buffer.from(`${key}:`).toString('base64')}`,
    `Token ${key}`,
    `Bearer ${big('k', rng.int(100, 20_000))}`,
    `Bearer ${rng.junk(30).replace(/[\r\n]/g, '')}`,
    '',
  ]);
  if (rng.chance(0.1)) return [];
  if (rng.chance(0.1))
    return [
      ['Authorization', value],
      ['Authorization', 'Bearer nope'],
    ];
  return [['Authorization', value]];
}

export function publishGarbage(rng: Random, target: Target): HttpGarbage {
  const auth: Header = ['Authorization', `Bearer ${target.apiKey}`];
  const post = (label: string, request: Partial<RawRequest>) =>
    build(target, 'publish', `publish ${label}`, 'reject', { method: 'POST', path: '/api/publish', ...request });
  switch (rng.int(0, 5)) {
    case 0:
    case 1:
      return post('refused JSON', {
        headers: [auth, ['Content-Type', JSON_TYPE]],
        body: refusedPublish(rng, target.room),
      });
    case 2: {
      // The classic form, refused for its fields.
      const body = rng.pick([
        'foo=1',
        '',
        `message=x&id=bad%20id`,
        `message=x&room=Bad`,
        `message=x&room=${target.room}&id=u1`,
        `message=&room=${target.room}`,
        `message=%00&room=${target.room}`,
        `message=x&message=y&room=${target.room}`,
        'message=x&event=bad%20event',
        '%zz',
      ]);
      return post('refused form', { headers: [auth, ['Content-Type', FORM]], body });
    }
    case 3: {
      // Not JSON, whatever the body: 415. The body would be refused as JSON
      // too (400), so a 400 means Herald read it as JSON anyway.
      const type = rng.pick(['text/plain', 'application/xml', 'multipart/form-data', 'application/jsonx', 'json', '']);
      const garbage = post(`content-type ${type || '(empty)'}`, {
        headers: [auth, ...(type ? [['Content-Type', type] as Header] : [])],
        body: JSON.stringify({ broadcast: true }),
      });
      return { ...garbage, statuses: [415] };
    }
    case 4:
      return post('oversized', {
        headers: [auth, ['Content-Type', JSON_TYPE]],
        body: JSON.stringify({ broadcast: true, message: big('x', rng.int(66_000, 300_000)) }),
      });
    default:
      // A valid publish with a wrong key: refused, and nothing may reach the clients.
      return post('wrong key', {
        headers: [...wrongAuthorization(rng, target.apiKey), ['Content-Type', JSON_TYPE]],
        body: JSON.stringify({ broadcast: true, message: 'published with a wrong key' }),
      });
  }
}
