// What Herald stored, read straight from MongoDB.

import type { Db } from 'mongodb';

/** A document of the `messages` collection. */
export interface StoredMessage {
  room: string;
  seq: number;
  client_id: string;
  name: string;
  body: string;
  at: Date;
}

/** A room's stored messages in sequence order, optionally only those with `body`. */
export function storedMessages(db: Db, room: string, body?: string): Promise<StoredMessage[]> {
  const filter = body === undefined ? { room } : { room, body };
  return db
    .collection<StoredMessage>('messages')
    .find(filter, { projection: { _id: 0 } })
    .sort({ seq: 1 })
    .toArray();
}

/** The room's last assigned sequence number (`room_heads`), or undefined. */
export async function roomHead(db: Db, room: string): Promise<number | undefined> {
  const head = await db.collection<{ _id: string; seq: number }>('room_heads').findOne({ _id: room });
  return head === null ? undefined : Number(head.seq);
}
