// Markup in names and bodies is shown as text, on the server and live.

import { test, expect, token } from '../fixtures';
import { postMessage } from '../support/form';

const PAYLOAD = '<img src=x onerror=alert(1)>';

test('markup in a stored message is rendered as text by the server', async ({ herald, visitors, request }) => {
  const room = `xss-${token()}`;
  await postMessage(request, herald.url, room, { name: PAYLOAD, body: PAYLOAD });

  const plain = await visitors.page(room, { js: false });
  const html = await (await plain.act.open()).text();
  expect(html).not.toContain(PAYLOAD);
  expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  await plain.expect.shownOnce(PAYLOAD);
  await plain.expect.sentBy(PAYLOAD, PAYLOAD);
  await plain.expect.noInjectedMarkup();

  // The same page with JavaScript: hydration must not turn it into markup either.
  const scripted = await visitors.open(room);
  await scripted.expect.shownOnce(PAYLOAD);
  await scripted.expect.sentBy(PAYLOAD, PAYLOAD);
  await scripted.expect.noInjectedMarkup();
  expect(visitors.dialogs).toEqual([]);
});

test('markup in a live message is rendered as text', async ({ visitors }) => {
  const room = `xss-${token()}`;
  const alice = await visitors.open(room);
  const bob = await visitors.open(room);

  await alice.act.setName(PAYLOAD);
  await alice.act.sendWithEnter(PAYLOAD);
  await bob.expect.shownOnce(PAYLOAD);
  await bob.expect.sentBy(PAYLOAD, PAYLOAD);
  await alice.expect.shownOnce(PAYLOAD);
  for (const visitor of [alice, bob]) await visitor.expect.noInjectedMarkup();

  await bob.act.reload();
  await bob.expect.connected();
  await bob.expect.shownOnce(PAYLOAD);
  await bob.expect.noInjectedMarkup();
  expect(visitors.dialogs).toEqual([]);
});
