// Page object for a room page (`/` or `/r/{room}`): locators, actions and
// checks kept apart. The DOM contract it relies on is listed in README.md.

import { expect, type Locator, type Page, type Response } from '@playwright/test';

/** The connection states `[data-testid=conn-status]` reports in `data-state`. */
export type ConnState = 'static' | 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** How long a page may take to (re)connect: covers the client's reconnect backoff. */
export const CONNECT_TIMEOUT_MS = 30_000;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Matches an element whose whole text is `text` (surrounding whitespace aside). */
export function exactText(text: string): RegExp {
  return new RegExp(`^\\s*${escapeRegExp(text)}\\s*$`);
}

/** The path of a room's page: `/` for the lobby, `/r/{room}` otherwise. */
export function roomPath(room: string): string {
  return room === 'lobby' ? '/' : `/r/${room}`;
}

/** Where a room page's parts are. */
export class RoomLocators {
  readonly messageList: Locator;
  /** Every message, stored or still being sent. */
  readonly messages: Locator;
  /** Stored messages (they carry their sequence number). */
  readonly stored: Locator;
  /** Messages sent from this page that the server has not acknowledged yet. */
  readonly pending: Locator;
  readonly composer: Locator;
  readonly nameInput: Locator;
  readonly bodyInput: Locator;
  readonly sendButton: Locator;
  readonly formError: Locator;
  readonly connStatus: Locator;
  readonly nojsNotice: Locator;

  constructor(readonly page: Page) {
    this.messageList = page.getByTestId('messages');
    this.messages = this.messageList.locator('li.message');
    this.stored = this.messageList.locator('li.message[data-seq]');
    this.pending = this.messageList.locator('li.message.pending');
    this.composer = page.locator('form#composer');
    this.nameInput = this.composer.locator('input[name=name]');
    this.bodyInput = this.composer.locator('textarea[name=body]');
    this.sendButton = this.composer.locator('button[type=submit]');
    this.formError = page.getByTestId('form-error');
    this.connStatus = page.getByTestId('conn-status');
    this.nojsNotice = page.getByTestId('nojs-notice');
  }

  /** The messages (stored or pending) whose body is exactly `body`. */
  withBody(body: string): Locator {
    return this.messages.filter({ has: this.page.locator('.body', { hasText: exactText(body) }) });
  }

  /** The stored messages whose body is exactly `body`. */
  storedWithBody(body: string): Locator {
    return this.stored.filter({ has: this.page.locator('.body', { hasText: exactText(body) }) });
  }
}

/** What a visitor does on a room page. */
export class RoomActions {
  constructor(
    private readonly at: RoomLocators,
    private readonly url: string,
  ) {}

  /** Loads the room page; returns the document response (its HTML is the SSR output). */
  async open(): Promise<Response> {
    const response = await this.at.page.goto(this.url);
    if (!response) throw new Error(`no response for ${this.url}`);
    return response;
  }

  async reload(): Promise<Response> {
    const response = await this.at.page.reload();
    if (!response) throw new Error(`no response reloading ${this.url}`);
    return response;
  }

  async setName(name: string): Promise<void> {
    await this.at.nameInput.fill(name);
  }

  /** Types a message and presses Enter (the JS path). */
  async sendWithEnter(body: string): Promise<void> {
    await this.at.bodyInput.fill(body);
    await this.at.bodyInput.press('Enter');
  }

  /** Types a message and clicks Send (the JS path). */
  async sendWithButton(body: string): Promise<void> {
    await this.at.bodyInput.fill(body);
    await this.at.sendButton.click();
  }

  /**
   * Submits the form as a browser without JavaScript does and returns the
   * response to the POST itself (303, or the error page); the page has
   * then loaded whatever came back.
   */
  async submitWithoutJs(body: string): Promise<Response> {
    await this.at.bodyInput.fill(body);
    const [post] = await Promise.all([
      this.at.page.waitForResponse(
        (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/add_message',
      ),
      this.at.page.waitForNavigation(),
      this.at.sendButton.click(),
    ]);
    return post;
  }

  /** Starts recording every `data-state` the connection status takes (JS pages only). */
  async recordConnStates(): Promise<void> {
    await this.at.page.evaluate(() => {
      const w = window as unknown as { __heraldStates?: string[] };
      const states: string[] = [];
      w.__heraldStates = states;
      const read = () => {
        const state = document.querySelector('[data-testid=conn-status]')?.getAttribute('data-state');
        if (state && states[states.length - 1] !== state) states.push(state);
      };
      read();
      new MutationObserver(read).observe(document.body, {
        subtree: true,
        childList: true,
        attributes: true,
        attributeFilter: ['data-state'],
      });
    });
  }

  /** The states recorded since `recordConnStates`, in order, without repeats. */
  connStates(): Promise<string[]> {
    return this.at.page.evaluate(() => (window as unknown as { __heraldStates?: string[] }).__heraldStates ?? []);
  }
}

/** What a room page should show. */
export class RoomChecks {
  constructor(private readonly at: RoomLocators) {}

  async state(state: ConnState, timeout?: number): Promise<void> {
    await expect(this.at.connStatus).toHaveAttribute('data-state', state, { timeout });
  }

  /** Hydrated and joined: the live connection is up. */
  async connected(timeout = CONNECT_TIMEOUT_MS): Promise<void> {
    await this.state('connected', timeout);
  }

  /** Hydrated: the status left its server-rendered `static` state. */
  async hydrated(): Promise<void> {
    await expect(this.at.connStatus).toHaveAttribute('data-state', /^(connecting|connected|reconnecting|offline)$/);
  }

  /**
   * The message with `body` is stored (has `data-seq`) and listed exactly once,
   * stored or pending. Returns its sequence number.
   */
  async shownOnce(body: string, timeout?: number): Promise<number> {
    const stored = this.at.storedWithBody(body);
    await expect(stored).toHaveCount(1, { timeout });
    await expect(this.at.withBody(body)).toHaveCount(1);
    const seq = await stored.getAttribute('data-seq');
    expect(seq, 'data-seq is a sequence number').toMatch(/^\d+$/);
    return Number(seq);
  }

  async notShown(body: string): Promise<void> {
    await expect(this.at.withBody(body)).toHaveCount(0);
  }

  /** The message with `body` shows `name` as its sender. */
  async sentBy(body: string, name: string): Promise<void> {
    await expect(this.at.withBody(body).locator('.name')).toHaveText(exactText(name));
  }

  /** The message list contains no element other than text-bearing markup (no injected `<img>`, `<script>`). */
  async noInjectedMarkup(): Promise<void> {
    await expect(this.at.messageList.locator('img, script, iframe, svg')).toHaveCount(0);
  }

  async formError(reason: string | RegExp): Promise<void> {
    await expect(this.at.formError).toBeVisible();
    await expect(this.at.formError).toContainText(reason);
  }

  /** Stored messages are listed in increasing sequence order. */
  async inSeqOrder(): Promise<void> {
    const seqs = (await this.at.stored.evaluateAll((items) => items.map((li) => li.getAttribute('data-seq')))).map(
      Number,
    );
    expect(seqs, 'stored messages in sequence order').toEqual([...seqs].sort((a, b) => a - b));
  }
}

/** A visitor's view of one room. */
export class RoomPage {
  readonly at: RoomLocators;
  readonly act: RoomActions;
  readonly expect: RoomChecks;
  readonly url: string;

  constructor(
    readonly page: Page,
    baseUrl: string,
    readonly room: string,
  ) {
    this.url = baseUrl + roomPath(room);
    this.at = new RoomLocators(page);
    this.act = new RoomActions(this.at, this.url);
    this.expect = new RoomChecks(this.at);
  }
}
