// The no-JavaScript way to send: read the composer's fields from a room page
// and POST them to /add_message as a browser without JavaScript would.

import { expect, type APIRequestContext, type APIResponse } from '@playwright/test';

export type Fields = Record<string, string>;

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, code: string) => {
    if (code[0] === '#') {
      const n = code[1] === 'x' || code[1] === 'X' ? parseInt(code.slice(2), 16) : parseInt(code.slice(1), 10);
      return String.fromCodePoint(n);
    }
    return ENTITIES[code.toLowerCase()] ?? whole;
  });
}

function attributes(tag: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/** The named `<input>` values of `form#composer` in a server-rendered page. */
export function composerFields(html: string): Fields {
  const form = /<form\b[^>]*\bid="composer"[^>]*>([\s\S]*?)<\/form>/.exec(html);
  if (!form) throw new Error(`no form#composer in the page:\n${html.slice(0, 2000)}`);
  const fields: Fields = {};
  for (const input of form[1].matchAll(/<input\b([^>]*)>/g)) {
    const attrs = attributes(input[1]);
    if (attrs.name) fields[attrs.name] = attrs.value ?? '';
  }
  return fields;
}

/** Loads a room page with `request` (its cookies included) and returns the composer's fields. */
export async function loadComposer(request: APIRequestContext, roomUrl: string): Promise<Fields> {
  const page = await request.get(roomUrl);
  expect(page.status(), `GET ${roomUrl}`).toBe(200);
  const fields = composerFields(await page.text());
  expect(fields.csrf, 'the composer carries a csrf token').toBeTruthy();
  return fields;
}

/** POSTs form fields to /add_message without following the redirect. */
export function postForm(request: APIRequestContext, baseUrl: string, fields: Fields): Promise<APIResponse> {
  return request.post(`${baseUrl}/add_message`, { form: fields, maxRedirects: 0 });
}

/**
 * Sends one message the no-JS way (fresh page load, so a fresh csrf token and
 * form id) and checks the 303 back to the room page.
 */
export async function postMessage(
  request: APIRequestContext,
  baseUrl: string,
  room: string,
  message: { name: string; body: string },
): Promise<void> {
  const roomPath = room === 'lobby' ? '/' : `/r/${room}`;
  const fields = await loadComposer(request, baseUrl + roomPath);
  const response = await postForm(request, baseUrl, { ...fields, ...message });
  expect(response.status(), `POST /add_message: ${await response.text()}`).toBe(303);
  expect(new URL(response.headers()['location'] ?? '', baseUrl).pathname).toBe(roomPath);
}
