// Herald through the official Socket.IO client (socket.io-client in Node, no
// browser), as a customer's app would use it: token handshakes, notifications
// published through `POST /api/publish`, room messages and chat, refused
// tokens, and the classic form-encoded publish.

import { test, expect, token } from '../fixtures';
import { algNoneToken, expiredToken, forgedToken, nowSecs, signToken, TOKEN_SECRETS, userToken } from '../support/auth';
import type { Client } from '../support/clients';
import type { ChatMessage, Notification } from '../support/protocol';
import { publish, published } from '../support/publish';

/** A user id no other test uses. */
const userId = (who: string) => `${who}-${token(3)}`;

function expectRecent(atMs: number): void {
  expect(Math.abs(Date.now() - atMs), '`at_ms` is about now').toBeLessThan(5 * 60_000);
}

const MODES = [
  { label: 'WebSocket only', transports: ['websocket'] as ('polling' | 'websocket')[] },
  { label: 'long-polling, then upgrade', transports: undefined },
];

for (const { label, transports } of MODES) {
  test(`a token user receives a notification published to them (${label})`, async ({ herald, clients }) => {
    const sub = userId('alice');
    const alice = await clients.connect('alice', { token: await userToken({ sub, name: 'Alice' }), transports });
    if (transports) {
      expect(alice.transport()).toBe('websocket');
    } else {
      // Started on long-polling; Herald must accept the upgrade.
      await alice.upgraded();
    }

    const data = { order: 42, status: 'shipped', items: ['book', 'lamp'], note: 'ünïcödé <b>', more: { n: null } };
    const sent = await published(herald.url, { user: sub, event: 'order.shipped', data });
    expect(sent.online, 'one of the user’s sockets was online').toBe(1);

    const got = await alice.waitFor<Notification>('notification', (n) => n.id === sent.id);
    expect(got).toMatchObject({ id: sent.id, stream: 'inbox', seq: sent.seq, event: 'order.shipped', read: false });
    expect(got.data).toEqual(data);
    expectRecent(got.at_ms);

    // It was stored first: a sync from the start finds it, unread.
    const synced = await alice.ok<{ inbox: Notification[]; broadcast: Notification[]; unread: number }>('sync', {
      inbox: 0,
      broadcast: 0,
    });
    expect(synced.inbox.map((n) => n.id)).toEqual([sent.id]);
    expect(synced.unread).toBe(1);
  });
}

test('a room publish and a second client’s chat message reach a room member', async ({ herald, clients }) => {
  const room = `rc-${token()}`;
  const alice = await clients.connect('alice', { token: await userToken({ sub: userId('alice'), name: 'Alice' }) });
  const bob = await clients.connect('bob', {
    token: await userToken({ sub: userId('bob'), name: 'Bob' }),
    transports: ['websocket'],
  });
  for (const client of [alice, bob]) {
    const joined = await client.ok<{ room: string; head: number; messages: ChatMessage[] }>('join', {
      room,
      since: 0,
    });
    expect(joined).toMatchObject({ room, head: 0, messages: [] });
  }

  const announcement = `Deploy ${token()} finished`;
  const sent = await published(herald.url, { room, message: announcement });
  expect(sent.online, 'both members were online').toBe(2);
  for (const client of [alice, bob]) {
    const message = await client.waitFor<ChatMessage>('message', (m) => m.room === room && m.seq === sent.seq);
    expect(message).toMatchObject({ room, seq: sent.seq, body: announcement, system: true });
    expectRecent(message.at_ms);
  }

  // Bob chats: he is signed in, so the token's name wins over the payload's.
  const body = `hi alice ${token()}`;
  const stored = await bob.ok<ChatMessage>('send', {
    room,
    client_id: `bob-${token(8)}`,
    name: 'Mallory',
    body,
  });
  expect(stored).toMatchObject({ room, body, name: 'Bob' });
  expect(stored.seq).toBeGreaterThan(sent.seq as number);
  expect(stored.system ?? false, 'a person’s message is not a system one').toBe(false);
  const atAlice = await alice.waitFor<ChatMessage>('message', (m) => m.client_id === stored.client_id);
  expect(atAlice).toEqual(stored);
});

// The negative cases below are built with support/auth.ts's signer: it must
// produce tokens Herald accepts, so each refusal is for its one defect.
test('tokens signed here with the current or the previous secret are accepted', async ({ herald, clients }) => {
  for (const [i, secret] of TOKEN_SECRETS.entries()) {
    const sub = userId(`signed${i}`);
    const client = await clients.connect(`signed with secret ${i}`, {
      token: signToken({ sub, exp: nowSecs() + 600 }, { secret }),
    });
    const sent = await published(herald.url, { user: sub, message: `hello ${i}` });
    expect(sent.online).toBe(1);
    const got = await client.waitFor<Notification>('notification', (n) => n.id === sent.id);
    expect(got.data).toBe(`hello ${i}`);
  }
});

const REFUSED: { kind: string; make: (sub: string) => string; reason: string }[] = [
  { kind: 'a forged (wrong secret)', make: forgedToken, reason: 'invalid token: token signature is invalid' },
  { kind: 'an expired', make: expiredToken, reason: 'invalid token: token has expired' },
  { kind: 'an alg: none', make: algNoneToken, reason: 'invalid token: token must be signed with HS256' },
];

for (const { kind, make, reason } of REFUSED) {
  test(`${kind} token is refused with the reason and never connects`, async ({ herald, clients }) => {
    const sub = userId('intruder');
    const { client, handshake } = clients.open(kind, { token: make(sub) });
    expect(await handshake).toEqual({ connected: false, reason });
    expectNeverConnected(client);

    // Herald holds no socket for that user either.
    const sent = await published(herald.url, { user: sub, message: 'anyone there?' });
    expect(sent.online).toBe(0);
    expect(client.payloads('notification')).toEqual([]);
  });
}

function expectNeverConnected(client: Client): void {
  expect(client.socket.connected, 'not connected').toBe(false);
  // A refusal by the server is final: the client will not try again by itself.
  expect(client.socket.active, 'not trying to connect').toBe(false);
  expect(client.connects, '`connect` never fired').toBe(0);
}

test('the classic form publish reaches an anonymous client (broadcast) and a user (id=…)', async ({
  herald,
  clients,
}) => {
  const sub = userId('u');
  const anonymous = await clients.connect('anonymous');
  const user = await clients.connect('user', { token: await userToken({ sub }) });

  // `curl -H 'Authorization: Bearer KEY' -d "message=Hello&id=$sub" …/api/publish`
  const hello = await published(herald.url, new URLSearchParams({ message: 'Hello', id: sub }));
  expect(hello.online).toBe(1);
  expect(await user.waitFor<Notification>('notification', (n) => n.id === hello.id)).toMatchObject({
    stream: 'inbox',
    event: 'notification',
    data: 'Hello',
  });

  // `curl -H 'Authorization: Bearer KEY' -d message=Ping …/api/publish`
  const ping = await published(herald.url, new URLSearchParams({ message: 'Ping' }));
  expect(ping.online, 'every socket is online for a broadcast').toBe(2);
  // The first notification the anonymous client gets is the Ping: a socket's
  // packets arrive in order, so the user's Hello (sent before) never reached it.
  const first = await anonymous.waitFor<Notification>('notification');
  expect(first).toMatchObject({ id: ping.id, stream: 'broadcast', seq: ping.seq, event: 'notification', data: 'Ping' });
  expect(first.read).toBe(false);
  expectRecent(first.at_ms);
  expect(await user.waitFor<Notification>('notification', (n) => n.id === ping.id)).toMatchObject({
    stream: 'broadcast',
    data: 'Ping',
  });
});

test('the publish API refuses a request without a valid key', async ({ herald }) => {
  const refused = await publish(herald.url, { broadcast: true, message: 'Ping' }, 'not-the-api-key-at-all');
  expect(refused.status).toBe(401);
  expect(refused.body).toMatchObject({ error: { code: 'unauthorized' } });
});
