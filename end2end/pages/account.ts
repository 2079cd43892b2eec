// Page objects for the signed-in parts of Herald's pages: the account corner
// of a room page (bell, unread count, notification panel), its toasts and
// presence line, and the server-rendered `/notifications` page. Locators,
// actions and checks are kept apart, as in pages/room.ts; the DOM contract
// is listed in README.md.

import { expect, type Locator, type Page, type Response } from '@playwright/test';
import { exactText } from './room';

/** `/login?token=…&next=…`: sets the session cookie, then 303 to `next`. */
export function loginPath(token: string, next: string): string {
  return `/login?token=${encodeURIComponent(token)}&next=${encodeURIComponent(next)}`;
}

/** Logs the page's browser context in and follows the redirect to `next`; returns the final response. */
export async function logIn(page: Page, baseUrl: string, token: string, next: string): Promise<Response> {
  const response = await page.goto(baseUrl + loginPath(token, next));
  if (!response) throw new Error(`no response for /login (next ${next})`);
  expect(response.status(), `GET /login, then ${next}`).toBe(200);
  expect(new URL(response.url()).pathname, 'redirected to `next`').toBe(next);
  return response;
}

/** Where the account corner, the toasts and the presence line of a room page are. */
export class AccountLocators {
  readonly account: Locator;
  readonly bell: Locator;
  readonly unreadCount: Locator;
  readonly userName: Locator;
  readonly panel: Locator;
  /** The panel's inbox list, newest first. */
  readonly notes: Locator;
  readonly unreadNotes: Locator;
  readonly markAllRead: Locator;
  readonly toasts: Locator;
  readonly presence: Locator;
  readonly presenceUsers: Locator;
  readonly presenceGuests: Locator;

  constructor(readonly page: Page) {
    this.account = page.getByTestId('account');
    this.bell = this.account.getByTestId('bell');
    this.unreadCount = this.bell.getByTestId('unread-count');
    this.userName = this.account.getByTestId('user-name');
    this.panel = this.account.getByTestId('note-panel');
    this.notes = this.panel.locator('ul[data-testid=notifications] li.note');
    this.unreadNotes = this.panel.locator('ul[data-testid=notifications] li.note.unread');
    this.markAllRead = this.panel.getByTestId('mark-all-read');
    this.toasts = page.getByTestId('toasts').locator('.toast');
    this.presence = page.getByTestId('presence');
    this.presenceUsers = this.presence.getByTestId('presence-users');
    this.presenceGuests = this.presence.getByTestId('presence-guests');
  }

  /** The panel's notifications whose text is exactly `text`. */
  note(text: string): Locator {
    return this.notes.filter({ has: this.page.locator('.text', { hasText: exactText(text) }) });
  }

  /** The toasts showing exactly `text` (a toast is its text plus a dismiss button). */
  toast(text: string): Locator {
    return this.toasts.filter({ has: this.page.locator('span', { hasText: exactText(text) }) });
  }
}

/** Collects, in the page itself, the text of every toast that was ever on screen. */
function recordToastsInPage(): void {
  const w = window as unknown as { __heraldToasts?: string[] };
  const seen: string[] = [];
  w.__heraldToasts = seen;
  const read = () => {
    for (const toast of Array.from(document.querySelectorAll('[data-testid=toasts] .toast'))) {
      const text = toast.querySelector('span')?.textContent?.trim() ?? '';
      if (!seen.includes(text)) seen.push(text);
    }
  };
  new MutationObserver(read).observe(document, { subtree: true, childList: true, characterData: true });
}

/** What a signed-in visitor does in the account corner. */
export class AccountActions {
  constructor(private readonly at: AccountLocators) {}

  /**
   * From now on, records every toast the page shows, however briefly, so a
   * test can say one never appeared. Call before the page loads (it runs as
   * an init script of every later navigation).
   */
  async recordToasts(): Promise<void> {
    await this.at.page.addInitScript(recordToastsInPage);
  }

  /** The texts of every toast shown since the page loaded, in order of appearance. */
  recordedToasts(): Promise<string[]> {
    return this.at.page.evaluate(() => {
      const seen = (window as unknown as { __heraldToasts?: string[] }).__heraldToasts;
      if (!seen) throw new Error('toasts are not being recorded: call recordToasts() before the page loads');
      return [...seen];
    });
  }

  /** Clicks the bell (JS: toggles the panel) and waits for the panel to show. */
  async openPanel(): Promise<void> {
    await this.at.bell.click();
    await expect(this.at.panel).toBeVisible();
  }

  /** Clicks the notification with `text` in the open panel (marks it read when unread). */
  async clickNote(text: string): Promise<void> {
    await this.at.note(text).click();
  }

  /** Clicks "Mark all read" in the open panel. */
  async markAllRead(): Promise<void> {
    await this.at.markAllRead.click();
  }
}

/** What the account corner, toasts and presence line should show. */
export class AccountChecks {
  constructor(private readonly at: AccountLocators) {}

  /** The bell's count shows `n`, as text and as `data-count`. */
  async unread(n: number): Promise<void> {
    await expect(this.at.unreadCount).toHaveText(exactText(String(n)));
    await expect(this.at.unreadCount).toHaveAttribute('data-count', String(n));
  }

  async signedInAs(name: string): Promise<void> {
    await expect(this.at.userName).toHaveText(exactText(name));
  }

  /** Anonymous: the corner says "Guest" and there is no bell. */
  async guest(): Promise<void> {
    await expect(this.at.account).toHaveText(exactText('Guest'));
    await expect(this.at.bell).toHaveCount(0);
  }

  async toastShown(text: string): Promise<void> {
    await expect(this.at.toast(text)).toBeVisible();
  }

  /** The panel lists the notification `text` once, read or unread as told. */
  async listed(text: string, { unread }: { unread: boolean }): Promise<void> {
    const note = this.at.note(text);
    await expect(note).toHaveCount(1);
    if (unread) {
      await expect(note).toHaveClass(/\bunread\b/);
    } else {
      await expect(note).not.toHaveClass(/\bunread\b/);
    }
  }

  /** The presence line names exactly these signed-in users, in this order. */
  async presentUsers(names: string[]): Promise<void> {
    await expect(this.at.presenceUsers).toHaveText(exactText(names.join(', ')));
  }

  /** The presence line's guest part: "", "1 guest", "2 guests", … */
  async guests(n: number): Promise<void> {
    const text = n === 0 ? '' : n === 1 ? '1 guest' : `${n} guests`;
    await expect(this.at.presenceGuests).toHaveText(exactText(text));
  }
}

/** The account corner of one visitor's room page. */
export class AccountPanel {
  readonly at: AccountLocators;
  readonly act: AccountActions;
  readonly expect: AccountChecks;

  constructor(readonly page: Page) {
    this.at = new AccountLocators(page);
    this.act = new AccountActions(this.at);
    this.expect = new AccountChecks(this.at);
  }
}

/** `/notifications`: the signed-in user's inbox, server-rendered, with forms that work without JS. */
export class NotificationsPage {
  readonly url: string;
  readonly unreadCount: Locator;
  readonly notes: Locator;
  readonly unreadNotes: Locator;
  readonly markAllReadButton: Locator;

  constructor(
    readonly page: Page,
    baseUrl: string,
  ) {
    this.url = `${baseUrl}/notifications`;
    this.unreadCount = page.getByTestId('unread-count');
    this.notes = page.locator('ul[data-testid=notifications] li.note');
    this.unreadNotes = page.locator('ul[data-testid=notifications] li.note.unread');
    this.markAllReadButton = page.getByTestId('mark-all-read');
  }

  async open(): Promise<Response> {
    const response = await this.page.goto(this.url);
    if (!response) throw new Error(`no response for ${this.url}`);
    return response;
  }

  note(text: string): Locator {
    return this.notes.filter({ has: this.page.locator('.text', { hasText: exactText(text) }) });
  }

  /**
   * Submits the form that `click` submits and returns the POST's own response
   * (303 back here); the page has then loaded what came back.
   */
  private async submit(click: () => Promise<void>): Promise<Response> {
    const [post] = await Promise.all([
      this.page.waitForResponse(
        (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/notifications/read',
      ),
      this.page.waitForNavigation(),
      click(),
    ]);
    return post;
  }

  /** Clicks the notification's "Mark read" button. */
  markRead(text: string): Promise<Response> {
    return this.submit(() => this.note(text).getByRole('button', { name: 'Mark read' }).click());
  }

  markAllRead(): Promise<Response> {
    return this.submit(() => this.markAllReadButton.click());
  }

  async expectUnread(n: number): Promise<void> {
    await expect(this.unreadCount).toHaveText(exactText(String(n)));
    await expect(this.unreadNotes).toHaveCount(n);
  }
}
