//! One node of the simulated mesh: OpenThread (the FTD build) on the simulated radio behind the
//! crate's software MAC, then the node's job: form the network and bridge to the server (border
//! router), become a router (router), or attach as a child and run the LwM2M engine (end device).

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::rc::Rc;

use anyhow::{Context as _, Result, anyhow};
use embassy_futures::select::{Either, select};
use embassy_time::{Instant, Timer};
use openthread::{
    DeviceRole, EmbassyTimeTimer, MacRadio, MacRadioResources, OpenThread, OtResources,
    OtUdpResources, SimpleRamSettings, UdpSocket,
};

use crate::device::{self, DeviceState};
use crate::exec::{self, DOWNLINK};
use crate::radio::SimRadio;
use crate::rng::SimRng;
use crate::spec::{NodeSpec, Role};
use crate::status;
use crate::wire::{Datagram, FromNode};

/// The server's address as the mesh sees it: on-mesh (the simulated network's mesh-local prefix
/// is fd00::/64) and held by the border router, which bridges it to the real server.
pub const SERVER: SocketAddrV6 =
    SocketAddrV6::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 5683, 0, 0);

/// UDP sockets per node, and the largest datagram one takes (IPv6's minimum MTU).
const UDP_SOCKETS: usize = 2;
const UDP_MTU: usize = 1280;

/// The node's IEEE EUI-64: a locally administered prefix and the node id.
fn eui64(id: u16) -> [u8; 8] {
    let [hi, lo] = id.to_be_bytes();
    [0x02, 0x0f, 0xa0, 0x00, 0x00, 0x00, hi, lo]
}

/// Runs the node in lockstep with the simulator until told to quit.
pub fn run(spec: NodeSpec) -> Result<()> {
    // One OpenThread instance per process (the crate keeps it in C globals), alive until exit.
    let rng: &'static mut SimRng = Box::leak(Box::new(SimRng::new(spec.seed)));
    let settings_buf: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let settings = Box::leak(Box::new(SimpleRamSettings::new(settings_buf)));
    let resources = Box::leak(Box::new(OtResources::new()));
    let udp = Box::leak(Box::new(OtUdpResources::<UDP_SOCKETS, UDP_MTU>::new()));
    let ot = OpenThread::new_with_udp(eui64(spec.id), rng, settings, resources, udp)
        .map_err(|e| anyhow!("OpenThread did not start: {e:?}"))?;
    let mac = Box::leak(Box::new(MacRadioResources::<16>::new()));
    let radio = MacRadio::new(SimRadio::default(), EmbassyTimeTimer, mac);
    let state = Rc::new(RefCell::new(DeviceState::default()));

    let app_state = state.clone();
    let app_ot = ot.clone();
    let status_ot = ot.clone();
    let node = async move {
        let app = async {
            if let Err(e) = job(app_ot, &spec, app_state).await {
                eprintln!("node {}: {e:#}", spec.id);
            }
        };
        select(ot.run(radio), app).await;
    };
    exec::run(node, move || status::json(&status_ot, &state.borrow()))
        .context("the link to the simulator broke")
}

/// The node's job, from its start time on.
async fn job(
    ot: OpenThread<'static>,
    spec: &NodeSpec,
    state: Rc<RefCell<DeviceState>>,
) -> Result<()> {
    Timer::at(Instant::from_millis(spec.start_ms)).await;
    ot.set_active_dataset_tlv(&spec.dataset)
        .map_err(|e| anyhow!("the dataset: {e:?}"))?;
    match spec.role {
        Role::EndDevice => ot.set_link_mode(true, false, false),
        Role::SleepyEndDevice { poll_ms } => ot
            .set_link_mode(false, false, false)
            .and_then(|()| ot.set_poll_period(poll_ms)),
        Role::BorderRouter | Role::Router => Ok(()),
    }
    .map_err(|e| anyhow!("link mode: {e:?}"))?;
    ot.enable_ipv6(true).map_err(|e| anyhow!("ipv6: {e:?}"))?;
    ot.enable_thread(true)
        .map_err(|e| anyhow!("thread: {e:?}"))?;
    match spec.role {
        Role::BorderRouter => bridge(ot).await,
        Role::Router => loop {
            // Skip the router selection jitter (up to 120 s): ask as soon as attached.
            if ot.device_role() == DeviceRole::Child {
                let _ = ot.become_router();
            }
            ot.wait_changed().await;
        },
        Role::EndDevice | Role::SleepyEndDevice { .. } => {
            let dev = spec
                .device
                .as_ref()
                .ok_or_else(|| anyhow!("an end device needs its firmware"))?;
            device::run(ot, dev, spec.seed, state).await
        }
    }
}

/// Adds `addr`/64 to the node's Thread interface.
#[allow(unsafe_code)] // an OpenThread C call the crate does not wrap
fn add_address(ot: &OpenThread<'static>, addr: Ipv6Addr) -> Result<()> {
    use openthread::sys;
    let mut netif = sys::otNetifAddress {
        mAddress: sys::otIp6Address {
            mFields: sys::otIp6Address__bindgen_ty_1 { m8: addr.octets() },
        },
        mPrefixLength: 64,
        ..Default::default()
    };
    netif.set_mPreferred(true);
    netif.set_mValid(true);
    // SAFETY: the instance is live for the call; OpenThread copies the address.
    let err = ot.with_instance(|i| unsafe { sys::otIp6AddUnicastAddress(i, &netif) });
    if err == sys::otError_OT_ERROR_NONE || err == sys::otError_OT_ERROR_ALREADY {
        Ok(())
    } else {
        Err(anyhow!("adding {addr}: OpenThread error {err}"))
    }
}

/// The border router's bridge: the server's address on the mesh side, every datagram to it
/// handed to the simulator (which delivers it to lwm2m-server), every datagram from the server
/// sent into the mesh from that address.
async fn bridge(ot: OpenThread<'static>) -> Result<()> {
    add_address(&ot, *SERVER.ip())?;
    let socket =
        UdpSocket::bind(ot.clone(), &SERVER).map_err(|e| anyhow!("bridge socket: {e:?}"))?;
    let mut buf = [0u8; UDP_MTU];
    loop {
        let downlink = poll_fn(|cx| DOWNLINK.with(|q| q.borrow_mut().poll_pop(cx)));
        match select(socket.recv(&mut buf), downlink).await {
            Either::First(Ok((n, local, remote))) => {
                let payload = buf.get(..n).unwrap_or_default().to_vec();
                exec::send(&FromNode::Uplink(Datagram {
                    from: remote,
                    to: local,
                    payload,
                }))?;
            }
            Either::First(Err(e)) => eprintln!("bridge: receive: {e:?}"),
            Either::Second(d) => {
                // A full buffer or no route yet: the datagram is lost, CoAP retransmits.
                let _ = socket.send(&d.payload, Some(&SERVER), &d.to).await;
            }
        }
    }
}
