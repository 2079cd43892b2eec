//! WebSocket message sizes, enforced on the wire.
//!
//! socketioxide's WebSocket (tungstenite under engineioxide) refuses a frame
//! or message over its configured size, but closes the connection with an
//! empty close frame, which clients report as 1005 ("no status"): they
//! can't tell "your message was too big" from any other close. So Herald
//! follows the frames a client sends on each WebSocket connection itself
//! ([`InboundFrames`]), from their headers only, and the moment a header says
//! its message would pass `HERALD_SOCKET_PAYLOAD_MAX_BYTES` it stops reading
//! and answers with [`CLOSE_TOO_BIG`], status 1009 "message too big"
//! ([`crate::http::conn::Killable`] does both). Nothing of that frame's payload has
//! been read, let alone buffered.

/// A close frame with status 1009 (RFC 6455 §7.4.1: "a message that is too
/// big for it to process"), as a server sends it (unmasked, no reason).
pub const CLOSE_TOO_BIG: [u8; 4] = [0x88, 0x02, 0x03, 0xF1];

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const HEAD_MAX: usize = 14;

/// Follows the frames a client sends, header by header, and says when one
/// would make its message bigger than the limit.
#[derive(Debug)]
pub struct InboundFrames {
    limit: u64,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// The next frame's header, as far as it has arrived.
    head: [u8; HEAD_MAX],
    head_len: usize,
    /// Payload bytes of the data message being assembled (its frames until
    /// the one marked final).
    message: u64,
}

impl InboundFrames {
    pub fn new(limit: u64) -> Self {
        Self { limit, payload_left: 0, head: [0; HEAD_MAX], head_len: 0, message: 0 }
    }

    /// Takes the next `bytes` the client sent. `Err(at)`: the frame whose
    /// header starts at `at` in `bytes` (0 if it began in an earlier read)
    /// is over the limit; what came before it is fine.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), usize> {
        let mut i = 0;
        while i < bytes.len() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(bytes.len() - i);
                self.payload_left -= skip as u64;
                i += skip;
                continue;
            }
            let head_start = i.saturating_sub(self.head_len);
            self.head[self.head_len] = bytes[i];
            self.head_len += 1;
            i += 1;
            if let Some(needed) = self.head_size()
                && self.head_len == needed
            {
                self.head_len = 0;
                if !self.frame_fits() {
                    return Err(head_start);
                }
            }
        }
        Ok(())
    }

    /// The size of the header begun in `head`, once its first two bytes say.
    fn head_size(&self) -> Option<usize> {
        if self.head_len < 2 {
            return None;
        }
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        let length = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + length + mask)
    }

    /// Reads the complete header in `head`: its payload is to be skipped,
    /// and a data frame adds to its message, which must stay within limits.
    fn frame_fits(&mut self) -> bool {
        let payload = match self.head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes(self.head[2..10].try_into().expect("eight bytes")),
            short => u64::from(short),
        };
        self.payload_left = payload;
        let opcode = self.head[0] & 0x0F;
        let fin = self.head[0] & 0x80 != 0;
        // Control frames (close, ping, pong) are not part of a message;
        // tungstenite holds them to 125 bytes.
        if opcode >= 8 {
            return true;
        }
        self.message = self.message.saturating_add(payload);
        let fits = self.message <= self.limit;
        if fin {
            self.message = 0;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for a payload of `len` bytes.
    fn head(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut head = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => head.push(0x80 | len as u8),
            126..=0xFFFF => {
                head.push(0x80 | 126);
                head.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                head.push(0x80 | 127);
                head.extend_from_slice(&len.to_be_bytes());
            }
        }
        head.extend_from_slice(&[1, 2, 3, 4]);
        head
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut frame = head(fin, opcode, len as u64);
        frame.extend(std::iter::repeat_n(b'x', len));
        frame
    }

    #[test]
    fn frames_within_the_limit_pass_however_they_are_split() {
        let mut wire = frame(true, 1, 100);
        wire.extend(frame(true, 1, 1000));
        wire.extend(frame(true, 9, 4)); // a ping
        wire.extend(frame(true, 2, 70_000 - 1));
        for chunk in [1, 2, 3, 7, 13, 4096, wire.len()] {
            let mut frames = InboundFrames::new(70_000);
            for piece in wire.chunks(chunk) {
                assert_eq!(frames.scan(piece), Ok(()), "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_caught_at_its_header() {
        let mut wire = frame(true, 1, 10);
        let at = wire.len();
        wire.extend(head(true, 1, 1024 * 1024));
        wire.extend(std::iter::repeat_n(b'x', 100));
        let mut frames = InboundFrames::new(32 * 1024);
        assert_eq!(frames.scan(&wire), Err(at));
        // Split inside the header: reported at the start of the read that
        // completed it, or where it began in this one.
        let mut frames = InboundFrames::new(32 * 1024);
        assert_eq!(frames.scan(&wire[..at + 3]), Ok(()));
        assert_eq!(frames.scan(&wire[at + 3..]), Err(0));
    }

    #[test]
    fn a_message_of_small_fragments_over_the_limit_is_caught() {
        let mut frames = InboundFrames::new(1000);
        assert_eq!(frames.scan(&frame(false, 1, 600)), Ok(()));
        assert_eq!(frames.scan(&frame(true, 9, 0)), Ok(()), "a ping between fragments does not count");
        assert_eq!(frames.scan(&frame(false, 0, 300)), Ok(()));
        assert_eq!(frames.scan(&frame(true, 0, 200)), Err(0), "600 + 300 + 200 > 1000");
        // After a final frame, the next message starts from zero.
        let mut frames = InboundFrames::new(1000);
        assert_eq!(frames.scan(&frame(true, 1, 900)), Ok(()));
        assert_eq!(frames.scan(&frame(true, 1, 900)), Ok(()));
    }

    #[test]
    fn the_close_frame_says_1009() {
        assert_eq!(CLOSE_TOO_BIG[0], 0x88, "final, opcode close");
        assert_eq!(usize::from(CLOSE_TOO_BIG[1]), CLOSE_TOO_BIG.len() - 2);
        assert_eq!(u16::from_be_bytes([CLOSE_TOO_BIG[2], CLOSE_TOO_BIG[3]]), 1009);
    }
}
