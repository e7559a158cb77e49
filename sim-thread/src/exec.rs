//! The node's run loop, in lockstep with the simulator: poll the node's one future until nothing
//! is ready, tell the simulator when the next timer is due ([`FromNode::Idle`]), then take the
//! next batch of events (the clock's advance, frames heard, datagrams for the border router) and
//! run again. The node never waits on the host's clock, so the simulation is as fast as the CPU
//! and its outcome does not depend on the host's load.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, BufReader, BufWriter, Stdin, Stdout};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crate::clock;
use crate::wire::{self, Datagram, FromNode, ToNode};

/// The pipe to the simulator: the node's stdin and stdout.
struct Link {
    rx: BufReader<Stdin>,
    tx: BufWriter<Stdout>,
}

/// Things that arrive from the simulator for a part of the node, and the task waiting for them.
pub struct Mailbox<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
}

impl<T> Mailbox<T> {
    const fn new() -> Self {
        Mailbox {
            items: VecDeque::new(),
            waker: None,
        }
    }

    fn push(&mut self, item: T) {
        self.items.push_back(item);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The next item, or registers `cx` to be woken by the next push.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        match self.items.pop_front() {
            Some(item) => Poll::Ready(item),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Forgets everything queued (a sleeping radio hears nothing).
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

thread_local! {
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
    /// Frames heard by the radio.
    pub static FRAMES: RefCell<Mailbox<Vec<u8>>> = const { RefCell::new(Mailbox::new()) };
    /// Datagrams from the server, for the border router's bridge.
    pub static DOWNLINK: RefCell<Mailbox<Datagram>> = const { RefCell::new(Mailbox::new()) };
}

fn with_link<R>(f: impl FnOnce(&mut Link) -> io::Result<R>) -> io::Result<R> {
    LINK.with(|l| match l.borrow_mut().as_mut() {
        Some(link) => f(link),
        None => Err(io::Error::other("the simulator link is not open")),
    })
}

/// Sends a message to the simulator.
pub fn send(m: &FromNode) -> io::Result<()> {
    with_link(|l| wire::send_from_node(&mut l.tx, m))
}

/// Puts a frame on the air: asks the simulator (which answers at once) whether the channel is
/// clear and how long the frame takes.
pub fn transmit(cca: bool, psdu: &[u8]) -> io::Result<(bool, u32)> {
    with_link(|l| {
        let tx = FromNode::Tx {
            cca,
            psdu: psdu.to_vec(),
        };
        wire::send_from_node(&mut l.tx, &tx)?;
        match wire::recv_to_node(&mut l.rx)? {
            ToNode::TxResult { clear, airtime_us } => Ok((clear, airtime_us)),
            other => Err(io::Error::other(format!(
                "expected the answer to a transmission, got {other:?}"
            ))),
        }
    })
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `node` in lockstep with the simulator on stdin/stdout until told to quit. `status`
/// answers the simulator's queries between batches.
pub fn run(node: impl Future<Output = ()>, mut status: impl FnMut() -> String) -> io::Result<()> {
    LINK.with(|l| {
        *l.borrow_mut() = Some(Link {
            rx: BufReader::new(io::stdin()),
            tx: BufWriter::new(io::stdout()),
        })
    });
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut node = pin!(node);
    loop {
        while flag.0.swap(false, Ordering::AcqRel) {
            if node.as_mut().poll(&mut cx).is_ready() {
                return Ok(());
            }
        }
        send(&FromNode::Idle {
            next: clock::next_deadline(),
        })?;
        loop {
            match with_link(|l| wire::recv_to_node(&mut l.rx))? {
                ToNode::Advance(t) => clock::advance(t),
                ToNode::Frame(psdu) => FRAMES.with(|f| f.borrow_mut().push(psdu)),
                ToNode::Downlink(d) => DOWNLINK.with(|q| q.borrow_mut().push(d)),
                ToNode::Query => send(&FromNode::Status(status()))?,
                ToNode::Go => break,
                ToNode::Quit => return Ok(()),
                ToNode::TxResult { .. } => {
                    return Err(io::Error::other("a transmission result out of turn"));
                }
            }
        }
    }
}
