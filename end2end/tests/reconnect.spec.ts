// Herald is killed (-9) and started again: visitors reconnect by themselves
// and miss nothing, nor see anything twice.

import { test, expect, token } from '../fixtures';
import { postMessage } from '../support/form';
import { gateSocketIo } from '../support/socket-gate';
import { storedMessages } from '../support/store';
import { settle } from '../support/sync';

test('after a restart visitors reconnect by themselves and later messages arrive once', async ({
  herald,
  visitors,
}) => {
  const room = `restart-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);
  const before = `before the restart ${token()}`;
  await alice.act.sendWithEnter(before);
  await bob.expect.shownOnce(before);
  await bob.act.recordConnStates();

  await herald.restart();

  await expect.poll(() => bob.act.connStates(), { message: "Bob's status while Herald was down" }).toContain(
    'reconnecting',
  );
  await bob.expect.connected();
  await alice.expect.connected();
  expect((await bob.act.connStates()).at(-1)).toBe('connected');

  const after = `after the restart ${token()}`;
  await alice.act.sendWithEnter(after);
  const seq = await bob.expect.shownOnce(after);
  expect(await alice.expect.shownOnce(after)).toBe(seq);
  await settle(alice, [bob]);
  for (const visitor of [alice, bob]) {
    await visitor.expect.shownOnce(before);
    await visitor.expect.shownOnce(after);
    await visitor.expect.inSeqOrder();
  }
  expect(await storedMessages(herald.db, room, after)).toHaveLength(1);
});

test('messages stored while a visitor is disconnected arrive once it reconnects', async ({
  herald,
  visitors,
  request,
}) => {
  const room = `restart-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.page(room);
  // Bob's first connection goes through; his reconnection waits for the test.
  const gate = await gateSocketIo(bob.page, 1);
  await bob.act.open();
  await bob.expect.connected();

  const before = `before ${token()}`;
  await alice.act.sendWithEnter(before);
  await bob.expect.shownOnce(before);

  await herald.restart();
  await gate.held();
  await expect(bob.at.connStatus).not.toHaveAttribute('data-state', 'connected');
  await alice.expect.connected();

  const posted = `posted while bob was away ${token()}`;
  await postMessage(request, herald.url, room, { name: 'carol', body: posted });
  const sent = `sent while bob was away ${token()}`;
  await alice.act.sendWithEnter(sent);
  await alice.expect.shownOnce(posted);
  await alice.expect.shownOnce(sent);
  await bob.expect.notShown(posted);
  await bob.expect.notShown(sent);

  gate.release();
  await bob.expect.connected();
  await bob.expect.shownOnce(posted);
  await bob.expect.shownOnce(sent);
  await settle(alice, [bob]);
  for (const body of [before, posted, sent]) await bob.expect.shownOnce(body);
  await bob.expect.inSeqOrder();
  expect((await storedMessages(herald.db, room)).map((m) => m.body).slice(0, 3)).toEqual([before, posted, sent]);
});
