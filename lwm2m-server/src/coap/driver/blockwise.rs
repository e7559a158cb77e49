//! Client-role block-wise transfers on the driver handle: pushing a body with Block1 (firmware
//! to /5/0/0) and fetching a large representation with Block2.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::net::SocketAddr;

use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
use lwm2m_core::block::{BlockValue, szx_at_most};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

use super::{CoapHandle, RequestError};
use crate::coap::block::{block1, block2, set_block1, set_block2, set_uint_option, uint_option};

/// A body read block by block at given offsets, so a firmware package never has to sit in RAM.
pub trait BodySource: Send {
    /// Total length in bytes.
    fn total_len(&self) -> u64;
    /// Fills `buf` from `offset`; returns fewer bytes only at the end of the body.
    fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Copies from an in-memory body.
fn read_slice(body: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(body.len());
    let n = buf.len().min(body.len() - start);
    buf[..n].copy_from_slice(&body[start..start + n]);
    n
}

impl BodySource for &[u8] {
    fn total_len(&self) -> u64 {
        self.len() as u64
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_slice(self, offset, buf))
    }
}

/// An owned body, for transfers run in a spawned (`'static`) task.
impl BodySource for Vec<u8> {
    fn total_len(&self) -> u64 {
        self.len() as u64
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_slice(self, offset, buf))
    }
}

/// A [`BodySource`] over any seekable async reader, e.g. a `tokio::fs::File`.
pub struct SeekableBody<R> {
    reader: R,
    len: u64,
    /// Where the reader stands, to skip the seek for sequential reads.
    position: Option<u64>,
}

impl<R: AsyncRead + AsyncSeek + Unpin + Send> SeekableBody<R> {
    /// Measures the body by seeking to its end.
    pub async fn new(mut reader: R) -> io::Result<Self> {
        let len = reader.seek(SeekFrom::End(0)).await?;
        Ok(Self {
            reader,
            len,
            position: None,
        })
    }
}

impl<R: AsyncRead + AsyncSeek + Unpin + Send> BodySource for SeekableBody<R> {
    fn total_len(&self) -> u64 {
        self.len
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if self.position != Some(offset) {
            self.reader.seek(SeekFrom::Start(offset)).await?;
        }
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.reader.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.position = Some(offset + filled as u64);
        Ok(filled)
    }
}

/// How often a device may make us restart with a smaller block size (one per size step).
const MAX_RESTARTS: usize = 7;

fn response_code(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    }
}

fn is_success(packet: &Packet) -> bool {
    crate::coap::wire::code(packet).is_success()
}

impl CoapHandle {
    /// Sends `body` as the payload of `base` (method, URI, Content-Format) block by block with
    /// Block1 (RFC 7959 §2.5): each block is a CON request that waits for its response.
    ///
    /// * 2.31 Continue (or another 2.xx) on a non-final block: next block. A smaller SZX in the
    ///   response's Block1 is honoured from the byte offset reached (late negotiation).
    /// * 4.13 with a Size1 (or Block1) that allows a smaller block: start again from byte 0 with
    ///   the largest block size that fits.
    /// * Any other response, or the response to the last block, is returned.
    ///
    /// `progress(sent, total)` is called after each acknowledged block (and with 0 on restart).
    pub async fn push_block1(
        &self,
        peer: SocketAddr,
        base: Packet,
        mut body: impl BodySource,
        block_size: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Packet, RequestError> {
        let total = body.total_len();
        let mut szx = szx_at_most(block_size as u64)
            .ok_or(RequestError::Blockwise("block size below 16 bytes"))?;
        let mut offset = 0u64;
        let mut restarts = 0;
        let mut buf = vec![0u8; 1024];
        loop {
            let size = 1u64 << (szx + 4);
            let want = usize::try_from(size.min(total - offset)).unwrap_or(0);
            let n = body.read_at(offset, &mut buf[..want]).await?;
            if n != want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than announced",
                )
                .into());
            }
            let num = u32::try_from(offset / size)
                .map_err(|_| RequestError::Blockwise("block number overflow"))?;
            let more = offset + (n as u64) < total;
            let block = BlockValue::new(num, more, szx)
                .map_err(|_| RequestError::Blockwise("block number overflow"))?;
            let mut request = base.clone();
            set_block1(&mut request, block);
            if num == 0 {
                set_uint_option(
                    &mut request,
                    CoapOption::Size1,
                    u32::try_from(total).unwrap_or(u32::MAX),
                );
            }
            request.payload = buf[..n].to_vec();
            let response = self.request(peer, request).await?;

            if response_code(&response) == Some(ResponseType::RequestEntityTooLarge) {
                let limit = [
                    uint_option(&response, CoapOption::Size1).map(u64::from),
                    block1(&response).ok().flatten().map(|b| b.size() as u64),
                ]
                .into_iter()
                .flatten()
                .min();
                match limit.and_then(szx_at_most) {
                    Some(smaller) if smaller < szx && restarts < MAX_RESTARTS => {
                        restarts += 1;
                        szx = smaller;
                        offset = 0;
                        progress(0, total);
                        continue;
                    }
                    _ => return Ok(response),
                }
            }
            if !more || !is_success(&response) {
                if !more && is_success(&response) {
                    progress(total, total);
                }
                return Ok(response);
            }
            offset += n as u64;
            progress(offset, total);
            // Late negotiation: the device prefers smaller blocks. `offset` is a multiple of the
            // old size and so of any smaller one.
            if let Ok(Some(ack)) = block1(&response)
                && ack.szx() < szx
            {
                szx = ack.szx();
            }
        }
    }

    /// GETs (or FETCHes) `request` and follows Block2 (RFC 7959 §2.4) until the last block,
    /// returning the last response and the reassembled body. The ETag must stay the same
    /// across blocks. A non-2.xx response ends the transfer and is returned with its own
    /// payload as the body.
    pub async fn fetch_block2(
        &self,
        peer: SocketAddr,
        request: Packet,
        limit: usize,
    ) -> Result<(Packet, Vec<u8>), RequestError> {
        fetch_block2_via(|p| self.request(peer, p), request, limit).await
    }
}

/// [`CoapHandle::fetch_block2`] over any way of sending one request and getting its response
/// (OSCORE protects each block request on its own, with Block2 inside).
pub async fn fetch_block2_via<E, F, Fut>(
    mut send: F,
    request: Packet,
    limit: usize,
) -> Result<(Packet, Vec<u8>), E>
where
    F: FnMut(Packet) -> Fut,
    Fut: std::future::Future<Output = Result<Packet, E>>,
    E: From<RequestError>,
{
    let mut body: Vec<u8> = Vec::new();
    let mut etag: Option<Vec<u8>> = None;
    let mut next = request.clone();
    loop {
        let response = send(next.clone()).await?;
        if !is_success(&response) {
            let payload = response.payload.clone();
            return Ok((response, payload));
        }
        let Some(block) = block2(&response)
            .map_err(|_| RequestError::Blockwise("bad Block2 option in a response"))?
        else {
            if !body.is_empty() {
                return Err(RequestError::Blockwise("a later block came without Block2").into());
            }
            if response.payload.len() > limit {
                return Err(RequestError::BodyTooLarge { limit }.into());
            }
            let payload = response.payload.clone();
            return Ok((response, payload));
        };
        let tag = response.get_first_option(CoapOption::ETag).cloned();
        if body.is_empty() {
            etag = tag;
        } else if tag != etag {
            return Err(
                RequestError::Blockwise("the representation changed during the transfer").into(),
            );
        }
        if block.offset() != body.len() as u64 {
            return Err(
                RequestError::Blockwise("the server sent a block at an unexpected offset").into(),
            );
        }
        if uint_option(&response, CoapOption::Size2).is_some_and(|s| s as usize > limit)
            || body.len() + response.payload.len() > limit
        {
            return Err(RequestError::BodyTooLarge { limit }.into());
        }
        if block.more() && response.payload.len() != block.size() {
            return Err(RequestError::Blockwise("a non-final block is not full").into());
        }
        body.extend_from_slice(&response.payload);
        if !block.more() {
            return Ok((response, body));
        }
        let num = u32::try_from(body.len() / block.size()).unwrap_or(u32::MAX);
        let want = BlockValue::new(num, false, block.szx())
            .map_err(|_| RequestError::Blockwise("block number overflow"))?;
        next = request.clone();
        set_block2(&mut next, want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_sources_read_at_offsets_and_stop_at_the_end() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut buf = [0u8; 30];
        let mut slice = &data[..];
        assert_eq!(slice.read_at(90, &mut buf).await.unwrap(), 10);
        assert_eq!(&buf[..10], &data[90..]);
        let mut owned = data.clone();
        assert_eq!(owned.read_at(200, &mut buf).await.unwrap(), 0);
        assert_eq!(owned.read_at(0, &mut buf).await.unwrap(), 30);
        let mut seekable = SeekableBody::new(std::io::Cursor::new(data.clone()))
            .await
            .unwrap();
        assert_eq!(seekable.total_len(), 100);
        assert_eq!(seekable.read_at(40, &mut buf).await.unwrap(), 30);
        assert_eq!(&buf[..], &data[40..70]);
        assert_eq!(
            seekable.read_at(5, &mut buf).await.unwrap(),
            30,
            "seeks back"
        );
        assert_eq!(&buf[..], &data[5..35]);
        assert_eq!(seekable.read_at(80, &mut buf).await.unwrap(), 20);
    }
}
