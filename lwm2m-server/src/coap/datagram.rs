//! An outgoing datagram as two parts: the CoAP head (header, token, options, payload marker) and
//! the payload. A firmware block's payload is a slice of the release's shared image
//! ([`bytes::Bytes`]), so neither the response, the deduplication cache's copy of it nor a
//! retransmission copies or allocates the block; UDP sends the two parts as one datagram
//! (`sendmmsg` with two iovecs).

use bytes::Bytes;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    pub head: Bytes,
    pub body: Bytes,
}

impl Datagram {
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The datagram in one buffer (for transports that need contiguous bytes, and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.body);
        v
    }
}

impl From<Vec<u8>> for Datagram {
    fn from(bytes: Vec<u8>) -> Self {
        Datagram {
            head: Bytes::from(bytes),
            body: Bytes::new(),
        }
    }
}
