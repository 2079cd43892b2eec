// Two visitors with JavaScript chat live in one room.

import { test, expect, token } from '../fixtures';
import { storedMessages, roomHead } from '../support/store';
import { settle } from '../support/sync';

test('a message sent with Enter reaches the other visitor live, once, and is stored', async ({
  herald,
  visitors,
}) => {
  const room = `chat-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);
  const name = `alice-${token(2)}`;
  await alice.act.setName(name);

  const body = `hello from alice ${token()}`;
  await alice.act.sendWithEnter(body);

  const seq = await alice.expect.shownOnce(body);
  expect(await bob.expect.shownOnce(body), 'both visitors see the same sequence number').toBe(seq);
  await bob.expect.sentBy(body, name);
  // Alice's acknowledgement and any broadcast to her have both arrived once the
  // marker has: the message must still be there exactly once, and not pending.
  await settle(alice, [bob]);
  await alice.expect.shownOnce(body);
  await bob.expect.shownOnce(body);
  await expect(alice.at.pending).toHaveCount(0);

  const docs = await storedMessages(herald.db, room, body);
  expect(docs).toHaveLength(1);
  const [doc] = docs;
  expect(doc).toMatchObject({ room, seq, name, body });
  expect(typeof doc.client_id === 'string' && doc.client_id.length > 0, 'client_id is stored').toBe(true);
  const at = new Date(doc.at as unknown as string | number | Date).getTime();
  expect(Math.abs(Date.now() - at), '`at` is the time it was stored').toBeLessThan(5 * 60_000);
  // The message and the marker: the room's head counts both.
  expect(await roomHead(herald.db, room)).toBe(seq + 1);
});

test('the Send button sends too', async ({ herald, visitors }) => {
  const room = `chat-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);

  const body = `clicked ${token()}`;
  await alice.act.sendWithButton(body);

  await alice.expect.shownOnce(body);
  await bob.expect.shownOnce(body);
  await settle(alice, [bob]);
  await alice.expect.shownOnce(body);
  await bob.expect.shownOnce(body);
  expect(await storedMessages(herald.db, room, body)).toHaveLength(1);
});

test('a 2,000-character message is accepted', async ({ herald, visitors }) => {
  const room = `chat-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);

  const body = `${token()} `.repeat(200).slice(0, 1999) + 'x';
  expect(body).toHaveLength(2000);
  await alice.act.sendWithEnter(body);

  await bob.expect.shownOnce(body);
  await expect(alice.at.formError).toBeHidden();
  expect(await storedMessages(herald.db, room, body)).toHaveLength(1);
});

test('a 2,001-character message is refused with a reason and nothing is stored', async ({ herald, visitors }) => {
  const room = `chat-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);

  const body = 'y'.repeat(2001);
  await alice.act.sendWithEnter(body);
  await alice.expect.formError(/longer than 2000 characters/i);

  // Anything the refused message could have caused has arrived once a later one has.
  await settle(alice, [bob]);
  await alice.expect.notShown(body);
  await bob.expect.notShown(body);
  expect(await storedMessages(herald.db, room, body)).toHaveLength(0);
  expect(await storedMessages(herald.db, room), 'only the marker is stored').toHaveLength(1);
});
