// Garbage at the Engine.IO level, as WebSocket frames: unknown or misplaced
// packet types, truncated packets, binary junk, invalid UTF-8 in text
// frames, frames past the 32 KiB payload limit.

import type { Random } from './random';
import type { Frame } from './socket-garbage';

/** Packets a client may not send (or not now), `|`-separated; one is empty. */
const PACKET_TYPES = '7|8|9|a|Z|\u0000|| |-1|0|0{}|2probe|3probe|5|6|4|1|10'.split('|');
/** Packets cut short. */
const TRUNCATED = ['42', '42[', '42["', '42["send",{"room":"', '40{', '42["send",{"body":"'];
/** Invalid UTF-8 sequences, to be sent in a text frame. */
const INVALID_UTF8 = [
  [0xff],
  [0xc3, 0x28],
  [0xe2, 0x28, 0xa1],
  [0xf0, 0x28, 0x8c, 0x28],
  [0xed, 0xa0, 0x80],
  [0xc0, 0xaf],
];

function frame(label: string, data: string | Buffer, binary = false): Frame {
  // Any of these may get the connection closed.
  return { label, data, binary, mayClose: true };
}

/** An Engine.IO-level frame: unknown or misplaced packet types, truncation, junk bytes, huge frames. */
export function engineFrame(rng: Random): Frame {
  const huge = () => rng.int(33_000, 300_000);
  return rng.weighted<() => Frame>([
    [3, () => frame('engine packet type', rng.pick(PACKET_TYPES))],
    [2, () => frame('truncated', rng.pick(TRUNCATED))],
    [2, () => frame('binary junk', rng.bytes(rng.int(1, 2000)), true)],
    [
      2,
      () => {
        const bad = Buffer.from(rng.pick(INVALID_UTF8));
        return frame('invalid UTF-8', Buffer.concat([Buffer.from('42["send",{"body":"'), bad, Buffer.from('"}]')]));
      },
    ],
    [1, () => frame('huge text frame', `42["send",{"body":"${'h'.repeat(huge())}"}]`)],
    [1, () => frame('huge binary frame', Buffer.alloc(huge(), 0x34), true)],
    [1, () => frame('text junk', rng.junk(500))],
  ])();
}
