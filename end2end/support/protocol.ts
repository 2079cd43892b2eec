// Herald's Socket.IO payloads as clients receive them (docs/PROTOCOL.md).

/** A stored chat message: `message` events, `send` acks, `join` catch-ups. */
export interface ChatMessage {
  room: string;
  seq: number;
  client_id: string;
  name: string;
  body: string;
  at_ms: number;
  system?: boolean;
}

/** A published notification: `notification` events and `sync` results. */
export interface Notification {
  id: string;
  stream: 'inbox' | 'broadcast';
  seq: number;
  event: string;
  data: unknown;
  at_ms: number;
  read: boolean;
}
