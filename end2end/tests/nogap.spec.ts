// "No gap": a message stored after a visitor's page was rendered on the
// server, but before that visitor's live connection joined the room, must
// still reach that visitor, exactly once.

import { test, expect, token } from '../fixtures';
import { postMessage } from '../support/form';
import { gateSocketIo } from '../support/socket-gate';
import { storedMessages } from '../support/store';
import { settle } from '../support/sync';

test('a message sent live between page render and socket join reaches the late joiner once', async ({
  herald,
  visitors,
}) => {
  const room = `gap-${token()}`;
  const alice = await visitors.open(room);
  const before = `before ${token()}`;
  await alice.act.sendWithEnter(before);
  await alice.expect.shownOnce(before);

  const bob = await visitors.page(room);
  const gate = await gateSocketIo(bob.page);
  const html = await (await bob.act.open()).text();
  await gate.held();
  await bob.expect.hydrated();
  await expect(bob.at.connStatus).not.toHaveAttribute('data-state', 'connected');
  await bob.expect.shownOnce(before); // server-rendered history

  const body = `in the gap ${token()}`;
  await alice.act.sendWithEnter(body);
  const seq = await alice.expect.shownOnce(body);
  expect(await storedMessages(herald.db, room, body)).toHaveLength(1);
  expect(html, "the message is not in Bob's server-rendered page").not.toContain(body);
  await bob.expect.notShown(body);

  gate.release();
  await bob.expect.connected();
  expect(await bob.expect.shownOnce(body)).toBe(seq);
  await settle(alice, [bob]);
  await bob.expect.shownOnce(body);
  await bob.expect.shownOnce(before);
  await bob.expect.inSeqOrder();
});

test('a message posted without JavaScript in the gap reaches the late joiner once', async ({
  herald,
  visitors,
  request,
}) => {
  const room = `gap-${token()}`;
  const alice = await visitors.open(room);

  const bob = await visitors.page(room);
  const gate = await gateSocketIo(bob.page);
  const html = await (await bob.act.open()).text();
  await gate.held();
  await bob.expect.hydrated();

  const body = `posted in the gap ${token()}`;
  await postMessage(request, herald.url, room, { name: 'carol', body });
  expect(await storedMessages(herald.db, room, body)).toHaveLength(1);
  expect(html).not.toContain(body);
  const seq = await alice.expect.shownOnce(body); // live, for the connected visitor

  gate.release();
  await bob.expect.connected();
  expect(await bob.expect.shownOnce(body)).toBe(seq);
  await bob.expect.sentBy(body, 'carol');
  await settle(alice, [bob]);
  await bob.expect.shownOnce(body);
  await alice.expect.shownOnce(body);
});
