// Notifications in the browser: a user signed in through `/login` gets the
// notifications published to them (toast, bell count, panel list) in every
// tab, and nobody else does; broadcasts reach everyone; read state follows the
// user across tabs; the presence line follows who is in the room; and
// `/notifications` works without JavaScript.

import type { Db } from 'mongodb';
import { test, expect, token, type Visitors, type VisitorOptions } from '../fixtures';
import { AccountPanel, NotificationsPage, logIn } from '../pages/account';
import { exactText, roomPath, type RoomPage } from '../pages/room';
import { userToken } from '../support/auth';
import { postMessage } from '../support/form';
import { published } from '../support/publish';
import { saveScreenshot } from '../support/screenshot';

const ALICE = { sub: '63', name: 'Alice' };
const BOB = { sub: '64', name: 'Bob' };

interface Person {
  sub: string;
  name: string;
}

interface SignedIn {
  room: RoomPage;
  account: AccountPanel;
}

/**
 * A new visitor (browser context) who logs in as `who` with a token of their
 * own and lands on `room`; with JS, once connected. Toasts are recorded from
 * the first load on.
 */
async function signIn(visitors: Visitors, room: string, who: Person, options: VisitorOptions = {}): Promise<SignedIn> {
  const roomPage = await visitors.page(room, options);
  const account = new AccountPanel(roomPage.page);
  if (options.js !== false) await account.act.recordToasts();
  const tokenFor = await userToken({ sub: who.sub, name: who.name });
  await logIn(roomPage.page, new URL(roomPage.url).origin, tokenFor, roomPath(room));
  if (options.js !== false) await roomPage.expect.connected();
  await account.expect.signedInAs(who.name);
  return { room: roomPage, account };
}

/** An anonymous visitor on `room` (connected), recording toasts. */
async function guest(visitors: Visitors, room: string): Promise<SignedIn> {
  const roomPage = await visitors.page(room);
  const account = new AccountPanel(roomPage.page);
  await account.act.recordToasts();
  const response = await roomPage.act.open();
  expect(response.status(), `GET ${roomPage.url}`).toBe(200);
  await roomPage.expect.connected();
  await account.expect.guest();
  return { room: roomPage, account };
}

/** Read state of a user's inbox in MongoDB, by sequence number. */
async function storedReadState(db: Db, sub: string): Promise<Record<number, boolean>> {
  const docs = await db
    .collection<{ key: string; seq: number; read: boolean }>('notifications')
    .find({ key: `inbox:${sub}` })
    .toArray();
  return Object.fromEntries(docs.map((d) => [Number(d.seq), d.read]));
}

test('a notification to a user reaches all their tabs and nobody else; a broadcast reaches everyone', async ({
  herald,
  visitors,
}) => {
  const room = `notes-${token()}`;
  const alice1 = await signIn(visitors, room, ALICE);
  const alice2 = await signIn(visitors, room, ALICE);
  const bob = await signIn(visitors, room, BOB);
  const anonymous = await guest(visitors, room);
  for (const who of [alice1, alice2, bob]) await who.account.expect.unread(0);

  const forAlice = `Your order ${token()} has shipped`;
  const sent = await published(herald.url, { user: ALICE.sub, message: forAlice });
  expect(sent.online, 'both of Alice’s tabs are connected').toBe(2);
  for (const alice of [alice1, alice2]) {
    await alice.account.expect.toastShown(forAlice);
    await alice.account.expect.unread(1);
    await alice.account.expect.listed(forAlice, { unread: true });
  }

  // A broadcast published after Alice's notification reaches each socket
  // after it: once Bob and the guest show the broadcast, Alice's would have
  // arrived too, had it been sent to them.
  const marker = `Maintenance at noon ${token()}`;
  const everyone = await published(herald.url, { broadcast: true, message: marker });
  expect(everyone.online, 'every page is connected').toBe(4);
  for (const who of [alice1, alice2, bob, anonymous]) await who.account.expect.toastShown(marker);

  for (const other of [bob, anonymous]) {
    await expect(other.account.at.toast(forAlice)).toHaveCount(0);
    expect(await other.account.act.recordedToasts(), 'toasts ever shown').toEqual([marker]);
  }
  await bob.account.expect.unread(0);
  await expect(bob.account.at.notes).toHaveCount(0);

  // A broadcast is toasted but is not part of anyone's inbox.
  for (const alice of [alice1, alice2]) {
    await alice.account.expect.unread(1);
    await expect(alice.account.at.notes).toHaveCount(1);
    expect(await alice.account.act.recordedToasts(), 'toasts ever shown').toEqual([forAlice, marker]);
  }
});

test('a notification published while the user was away is listed unread when they open a page', async ({
  herald,
  visitors,
}) => {
  const room = `away-${token()}`;
  const text = `Invoice ${token()} is ready`;
  const sent = await published(herald.url, { user: ALICE.sub, message: text });
  expect(sent.online, 'Alice has no page open').toBe(0);

  // Rendered on the server: the count is right before any script runs.
  const nojs = await signIn(visitors, room, ALICE, { js: false });
  await nojs.account.expect.unread(1);
  await nojs.account.expect.listed(text, { unread: true });
  await expect(nojs.account.at.bell, 'without JS the bell links to the inbox page').toHaveAttribute(
    'href',
    '/notifications',
  );
  const html = await (await nojs.room.page.context().request.get(nojs.room.url)).text();
  const count = /<span\b([^>]*\bdata-testid="unread-count"[^>]*)>([\s\S]*?)<\/span>/.exec(html);
  expect(count, 'the server-rendered page has the unread count').not.toBeNull();
  expect(count![1], 'server-rendered data-count').toMatch(/\bdata-count="1"/);
  expect(count![2].replace(/<!--[\s\S]*?-->/g, '').trim(), 'server-rendered count text').toBe('1');

  // With JS: still one after hydration and the catch-up sync (not counted twice).
  const alice = await signIn(visitors, room, ALICE);
  await alice.account.expect.unread(1);
  await alice.account.act.openPanel();
  await alice.account.expect.listed(text, { unread: true });
  await expect(alice.account.at.notes).toHaveCount(1);

  // It arrived before the page opened: it is listed, never toasted. A
  // broadcast sent now arrives after the catch-up, so once it shows, any toast
  // the catch-up would have raised has been raised.
  const marker = `marker ${token()}`;
  await published(herald.url, { broadcast: true, message: marker });
  await alice.account.expect.toastShown(marker);
  expect(await alice.account.act.recordedToasts(), 'toasts ever shown').toEqual([marker]);
  await alice.account.expect.unread(1);
});

test('marking read in one tab updates the count in the other tab live', async ({ herald, visitors }) => {
  const room = `read-${token()}`;
  const alice1 = await signIn(visitors, room, ALICE);
  const alice2 = await signIn(visitors, room, ALICE);

  const first = `First ${token()}`;
  const second = `Second ${token()}`;
  for (const message of [first, second]) await published(herald.url, { user: ALICE.sub, message });
  for (const alice of [alice1, alice2]) {
    await alice.account.expect.unread(2);
    await alice.account.expect.listed(first, { unread: true });
    await alice.account.expect.listed(second, { unread: true });
  }

  // Click one item in the first tab.
  await alice1.account.act.openPanel();
  await alice1.account.act.clickNote(first);
  await alice1.account.expect.unread(1);
  await alice1.account.expect.listed(first, { unread: false });
  await alice2.account.expect.unread(1);
  await alice2.account.expect.listed(first, { unread: false });
  await alice2.account.expect.listed(second, { unread: true });
  await expect.poll(() => storedReadState(herald.db, ALICE.sub)).toEqual({ 1: true, 2: false });

  // "Mark all read" in the second tab.
  await alice2.account.act.openPanel();
  await alice2.account.act.markAllRead();
  await alice2.account.expect.unread(0);
  await alice1.account.expect.unread(0);
  await alice1.account.expect.listed(second, { unread: false });
  await expect(alice1.account.at.unreadNotes).toHaveCount(0);
  await expect.poll(() => storedReadState(herald.db, ALICE.sub)).toEqual({ 1: true, 2: true });
});

test('the presence line follows signed-in users and guests joining and leaving', async ({ visitors }) => {
  const room = `here-${token()}`;
  const alice = await signIn(visitors, room, ALICE);
  await alice.account.expect.presentUsers(['Alice']);
  await alice.account.expect.guests(0);

  const bob = await signIn(visitors, room, BOB);
  await alice.account.expect.presentUsers(['Alice', 'Bob']);
  await bob.account.expect.presentUsers(['Alice', 'Bob']);

  // A second tab of Alice's does not name her twice.
  const aliceAgain = await signIn(visitors, room, ALICE);
  await aliceAgain.account.expect.presentUsers(['Alice', 'Bob']);
  await alice.account.expect.presentUsers(['Alice', 'Bob']);

  const guest1 = await guest(visitors, room);
  await alice.account.expect.guests(1);
  await guest1.account.expect.presentUsers(['Alice', 'Bob']);
  const guest2 = await guest(visitors, room);
  await alice.account.expect.guests(2);
  await bob.account.expect.guests(2);

  await bob.room.page.close();
  await alice.account.expect.presentUsers(['Alice']);
  await guest2.account.expect.presentUsers(['Alice']);

  await guest1.room.page.close();
  await alice.account.expect.guests(1);

  // One of Alice's two tabs leaving leaves her present.
  await aliceAgain.room.page.close();
  await guest2.account.expect.guests(1);
  await expect(guest2.account.at.presenceUsers).toHaveText(exactText('Alice'));
});

test('without JavaScript, /notifications lists the inbox and marks read with forms', async ({
  herald,
  visitors,
}) => {
  const older = `Older ${token()}`;
  const newer = `Newer ${token()}`;
  for (const message of [older, newer]) await published(herald.url, { user: ALICE.sub, message });

  const nojs = await visitors.page('lobby', { js: false });
  const inbox = new NotificationsPage(nojs.page, herald.url);

  // Not logged in yet: nothing to list.
  expect((await inbox.open()).status()).toBe(200);
  await expect(nojs.page.getByText('Log in to see your notifications')).toBeVisible();
  await expect(inbox.notes).toHaveCount(0);

  await logIn(nojs.page, herald.url, await userToken(ALICE), '/notifications');
  await inbox.expectUnread(2);
  await expect(inbox.notes.locator('.text'), 'newest first').toHaveText([exactText(newer), exactText(older)]);

  const markOne = await inbox.markRead(older);
  expect(markOne.status(), 'POST /notifications/read').toBe(303);
  expect(new URL(markOne.headers()['location'] ?? '', herald.url).pathname).toBe('/notifications');
  await inbox.expectUnread(1);
  await expect(inbox.note(older)).not.toHaveClass(/\bunread\b/);
  await expect(inbox.note(older).getByRole('button', { name: 'Mark read' })).toHaveCount(0);
  await expect(inbox.note(newer)).toHaveClass(/\bunread\b/);
  expect(await storedReadState(herald.db, ALICE.sub)).toEqual({ 1: true, 2: false });

  const markAll = await inbox.markAllRead();
  expect(markAll.status(), 'POST /notifications/read all=true').toBe(303);
  await inbox.expectUnread(0);
  await expect(inbox.notes).toHaveCount(2);
  expect(await storedReadState(herald.db, ALICE.sub)).toEqual({ 1: true, 2: true });
});

test('screenshot of the bell panel and a toast', async ({ herald, visitors, request }, testInfo) => {
  const room = 'lobby';
  await postMessage(request, herald.url, room, { name: 'grace', body: 'The release build is green.' });
  await postMessage(request, herald.url, room, { name: 'ada', body: 'Shipping the order updates now.' });
  await published(herald.url, { user: ALICE.sub, event: 'order.shipped', message: 'Order #1042 has shipped' });
  await published(herald.url, { user: ALICE.sub, event: 'invoice.ready', message: 'Your March invoice is ready' });

  const roomPage = await visitors.page(room, { viewport: { width: 1100, height: 720 } });
  const alice = new AccountPanel(roomPage.page);
  await logIn(roomPage.page, herald.url, await userToken(ALICE), roomPath(room));
  await roomPage.expect.connected();
  await roomPage.expect.shownOnce('Shipping the order updates now.');
  await alice.act.openPanel();
  await alice.act.clickNote('Order #1042 has shipped');
  await alice.expect.unread(1);

  const live = 'Deploy finished: version 2.4 is live';
  await published(herald.url, { user: ALICE.sub, event: 'deploy.done', message: live });
  await alice.expect.toastShown(live);
  await alice.expect.unread(2);

  await saveScreenshot(roomPage.page, testInfo, 'screenshot-notifications.png');
});
