// Herald without JavaScript: history, the notice, plain form posts, errors.

import { test, expect, token } from '../fixtures';
import { roomPath } from '../pages/room';
import { loadComposer, postForm, postMessage } from '../support/form';
import { storedMessages } from '../support/store';

test('without JavaScript a visitor reads history, posts, and a live visitor sees the post', async ({
  herald,
  visitors,
  request,
}) => {
  const room = `nojs-${token()}`;
  const seeded = [1, 2, 3].map((i) => `seeded ${i} ${token()}`);
  for (const body of seeded) await postMessage(request, herald.url, room, { name: 'seeder', body });

  const live = await visitors.open(room);
  const plain = await visitors.open(room, { js: false });

  for (const body of seeded) await plain.expect.shownOnce(body);
  await plain.expect.inSeqOrder();
  await expect(plain.at.nojsNotice).toBeVisible();
  await expect(plain.at.nojsNotice).toContainText(/not update live/i);
  await plain.expect.state('static');
  await expect(live.at.nojsNotice).toHaveCount(0);

  await plain.act.setName('plain-pat');
  const body = `no script ${token()}`;
  const post = await plain.act.submitWithoutJs(body);
  expect(post.status(), 'POST /add_message redirects').toBe(303);
  expect(new URL(plain.page.url()).pathname).toBe(roomPath(room));
  await plain.expect.shownOnce(body);
  await plain.expect.sentBy(body, 'plain-pat');

  await live.expect.shownOnce(body);
  await live.expect.sentBy(body, 'plain-pat');
  const docs = await storedMessages(herald.db, room);
  expect(docs.map((d) => d.body)).toEqual([...seeded, body]);
  expect(docs[3].name).toBe('plain-pat');
});

test('without JavaScript an empty message is refused with a reason and nothing is stored', async ({
  herald,
  visitors,
  request,
}) => {
  const room = `nojs-${token()}`;
  const seeded = `seeded ${token()}`;
  await postMessage(request, herald.url, room, { name: 'seeder', body: seeded });
  const plain = await visitors.open(room, { js: false });

  // Only whitespace: the browser sends it, the server trims it to nothing.
  const post = await plain.act.submitWithoutJs('   ');
  expect(post.status(), 'an invalid post is answered with 4xx').toBeGreaterThanOrEqual(400);
  expect(post.status()).toBeLessThan(500);
  await plain.expect.formError(/message is empty/i);
  await plain.expect.shownOnce(seeded); // still the room page

  // Literally empty, straight from a form post.
  const fields = await loadComposer(request, herald.url + roomPath(room));
  const empty = await postForm(request, herald.url, { ...fields, name: 'x', body: '' });
  expect(empty.status()).toBe(422);
  expect(await empty.text()).toContain('data-testid="form-error"');

  expect(await storedMessages(herald.db, room), 'only the seeded message').toHaveLength(1);
});

test('a post without a valid csrf token is refused and stores nothing', async ({ herald, playwright, request }) => {
  const room = `csrf-${token()}`;
  const roomUrl = herald.url + roomPath(room);
  const fields = await loadComposer(request, roomUrl);
  const { csrf, ...withoutCsrf } = fields;
  const body = `forged ${token()}`;
  const message = { name: 'mallory', body };

  // Another visitor's valid token, sent with this visitor's cookies.
  const other = await playwright.request.newContext();
  const othersCsrf = (await loadComposer(other, roomUrl)).csrf;
  await other.dispose();

  const forged: Array<[string, Record<string, string>]> = [
    ['no csrf field', withoutCsrf],
    ['an empty csrf', { ...fields, csrf: '' }],
    ['a garbage csrf', { ...fields, csrf: 'not-a-token' }],
    ['a tampered csrf', { ...fields, csrf: csrf.slice(0, -1) + (csrf.endsWith('a') ? 'b' : 'a') }],
    ["another visitor's csrf", { ...fields, csrf: othersCsrf }],
  ];
  for (const [what, form] of forged) {
    const response = await postForm(request, herald.url, { ...form, ...message });
    expect([400, 403, 422], `a post with ${what}: status`).toContain(response.status());
  }
  expect(await storedMessages(herald.db, room), 'nothing stored').toHaveLength(0);

  // The control: the same post with the page's own token goes through.
  const accepted = await postForm(request, herald.url, { ...fields, ...message });
  expect(accepted.status()).toBe(303);
  expect(await storedMessages(herald.db, room, body)).toHaveLength(1);
});
