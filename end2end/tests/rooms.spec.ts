// Rooms in the browser: the room list (the rooms a visitor may enter, with
// and without JavaScript, marked when they hold messages the visitor has not
// read), a private room refused to a user it does not let in, and a message
// removed through the server API leaving every open page at once.

import { test, expect, token, type Visitors } from '../fixtures';
import { logIn } from '../pages/account';
import { roomPath, type RoomPage } from '../pages/room';
import { API_KEY, userToken, type TokenRequest } from '../support/auth';
import { published } from '../support/publish';

/** A visitor signed in with a token for `who`, on `room`'s page. */
async function signedIn(visitors: Visitors, room: string, who: TokenRequest): Promise<RoomPage> {
  const page = await visitors.page(room);
  await logIn(page.page, new URL(page.url).origin, await userToken(who), roomPath(room));
  return page;
}

/** The room list's link to `room`. */
function listed(page: RoomPage, room: string) {
  return page.page.getByTestId('room-list').locator(`a[data-room="${room}"]`);
}

test('the room list links the rooms a visitor may enter and marks those with unread messages', async ({
  herald,
  visitors,
}) => {
  const busy = `busy-${token()}`;
  const read = `read-${token()}`;
  const someone = await visitors.open(busy);
  await someone.act.sendWithEnter(`hello ${token()}`);

  // The visitor reads a room, then goes to the lobby: both listed, with
  // the room where someone is.
  const visitor = await visitors.open(read);
  await visitor.act.sendWithEnter('first');
  await visitor.expect.shownOnce('first');
  const lobby = visitor.page;
  const page = visitor;
  // Presence is recorded just after a join is answered: the page is
  // rendered again until it counts the room's visitor.
  await expect(async () => {
    await lobby.goto(`${herald.url}/`);
    await expect(listed(page, busy)).toHaveAttribute('title', '1 here', { timeout: 1_000 });
  }).toPass();
  await expect(listed(page, 'lobby')).toHaveAttribute('aria-current', 'page');
  await expect(listed(page, read)).toBeVisible();
  await expect(listed(page, read).getByTestId('unread')).toHaveCount(0);

  // A message in the room read: marked on the next page, until read again.
  const news = `news ${token()}`;
  const sent = await published(herald.url, { room: read, message: news });
  expect(sent.seq ?? 0).toBeGreaterThan(1);
  await lobby.reload();
  await expect(listed(page, read).getByTestId('unread')).toHaveCount(1);
  await listed(page, read).click();
  await expect(lobby).toHaveURL(`${herald.url}/r/${read}`);
  // The URL changes as the click is taken; the room is read (its cookie set
  // by the answer that loads it) once its messages are shown.
  await page.expect.shownOnce(news);
  await lobby.goto(`${herald.url}/`);
  await expect(listed(page, read).getByTestId('unread')).toHaveCount(0);

  // Without JavaScript the list is the same links.
  const nojs = await visitors.page('lobby', { js: false });
  await nojs.act.open();
  await listed(nojs, busy).click();
  await expect(nojs.page).toHaveURL(`${herald.url}/r/${busy}`);
});

test.describe('private rooms', () => {
  test.use({ heraldSetup: { env: { HERALD_PRIVATE_ROOMS: 'team-*' } } });

  test('a private room is refused to a user it does not let in, by page and by list', async ({ visitors }) => {
    const room = `team-${token()}`;
    const secret = `the plan ${token()}`;
    const alice = await signedIn(visitors, room, { sub: '63', name: 'Alice', rooms: ['team-*'] });
    await alice.expect.connected();
    await expect(alice.page.getByTestId('private-room')).toBeVisible();
    await alice.act.sendWithEnter(secret);
    await alice.expect.shownOnce(secret);

    // Bob signs in on the lobby: the room Alice is in is not listed, and its
    // page is not found.
    const bob = await signedIn(visitors, 'lobby', { sub: '64', name: 'Bob' });
    await bob.expect.connected();
    await expect(listed(bob, room)).toHaveCount(0);
    const refused = await bob.page.goto(`${new URL(bob.url).origin}/r/${room}`);
    expect(refused?.status(), 'a private room answers as if it did not exist').toBe(404);
    await expect(bob.page.getByRole('heading', { name: 'Nothing here' })).toBeVisible();
    await expect(bob.page.locator('body')).not.toContainText(secret);

    // A visitor without a token: the same.
    const guest = await visitors.page(room);
    const response = await guest.act.open();
    expect(response.status()).toBe(404);
  });
});

test('a message removed through the server API disappears from every open page at once', async ({
  herald,
  visitors,
}) => {
  const room = `mod-${token()}`;
  const writer = await visitors.open(room);
  const reader = await visitors.open(room);
  const oops = `oops ${token()}`;
  const kept = `kept ${token()}`;
  await writer.act.sendWithEnter(oops);
  await writer.act.sendWithEnter(kept);
  const seq = await reader.expect.shownOnce(oops);
  await reader.expect.shownOnce(kept);

  const response = await fetch(`${herald.url}/api/rooms/${room}/messages/${seq}`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${API_KEY}` },
  });
  expect(response.status, await response.clone().text()).toBe(200);
  for (const page of [writer, reader]) {
    await page.expect.notShown(oops);
    await page.expect.shownOnce(kept);
  }
  await reader.act.reload();
  await reader.expect.notShown(oops);
  await reader.expect.shownOnce(kept);
});
