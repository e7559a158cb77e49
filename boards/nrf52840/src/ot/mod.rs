//! The `thread` build: the board on OpenThread (MTD, through the `openthread` crate) instead of
//! raw 802.15.4 + 6LoWPAN. Boot, flash and engine are the default build's; the network is a
//! Thread mesh.
//!
//! ```text
//!  RADIO ─ NrfRadio ─ MacRadio (software ACKs, retries, filtering) ─ PhyRadioRunner
//!                                            │  interrupt executor on EGU0_SWI0 (preempts the rest)
//!                                 ProxyRadio ▼
//!  OpenThread (MLE attach, MAC security, 6LoWPAN, IPv6) ─ UdpSocket :5683 ─ Engine (engine::run)
//!                                              thread-mode executor (with the watchdog)
//! ```
//!
//! embassy-nrf's radio is a bare PHY, so the crate's `MacRadio` sends the ACKs in software; the
//! 802.15.4 turnaround (192 µs) leaves no room for an ordinary task that waits behind OpenThread's
//! tasklets or the engine's SUIT verification, hence the PHY runs in a higher-priority interrupt
//! executor and talks to OpenThread through `ProxyRadio` (the crate README's recommendation).
//!
//! Network credentials are not in the image: the active operational dataset comes from the
//! provisioning record in SETTINGS ([`credentials`]), which updates never overwrite. Without one
//! the board does not attach: it blinks LED1 and waits (or, with feature `thread-joiner`, tries to
//! join with the provisioned PSKd).
//!
//! ABI: OpenThread and mbedTLS are C/C++ compiled by openthread-sys's build script for this very
//! target, `thumbv7em-none-eabihf` (hard-float), the ABI of everything else on the board. The
//! crate's prebuilt libraries are soft-float (`thumbv7em-none-eabi`), and objects of the two ABIs
//! must not be linked together (float arguments travel in different registers; GNU ld refuses,
//! and the built libraries carry `Tag_ABI_VFP_args: VFP registers` like ours); moving the whole board to soft-float would slow its float code and split
//! it from the QEMU tier, so OpenThread is built from source (clang, cmake, ninja: setup.sh).

mod credentials;
mod engine;
mod records;

use core::sync::atomic::{AtomicU8, Ordering};

use embassy_executor::{InterruptExecutor, Spawner};
use embassy_nrf::config::HfclkSource;
use embassy_nrf::gpio::{Level, Output, OutputDrive};
use embassy_nrf::interrupt;
use embassy_nrf::interrupt::{InterruptExt, Priority};
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::rng::Rng;
use embassy_nrf::wdt::{self, Watchdog, WatchdogHandle};
use embassy_nrf::{Peri, bind_interrupts, peripherals};
use embassy_time::{Duration, Ticker, Timer};
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use openthread::nrf::{Ieee802154, NrfRadio};
use openthread::{
    DeviceRole, EmbassyTimeTimer, MacRadio, MacRadioResources, OpenThread, OtResources,
    OtUdpResources, PhyRadioRunner, ProxyRadio, ProxyRadioResources,
};
use panic_halt as _;
use static_cell::StaticCell;
// OpenThread's C++ calls `strcmp` and friends: no libc on this target.
use tinyrlibc as _;

use crate::{boot, config, lwm2m};

// The application must be linked where the layout puts ACTIVE.
const _: () = assert!(Layout::NRF52840.active().start == config::LINKED_AT);
const _: () = assert!(Layout::NRF52840.slot_size() == config::LINKED_LEN);

bind_interrupts!(struct Irqs {
    RADIO => embassy_nrf::radio::InterruptHandler<peripherals::RADIO>;
});

pub type Flash = Nvmc<'static>;

/// Seconds a hung executor has before the watchdog resets the chip (as in the default build).
const WATCHDOG_S: u32 = 8;

/// The board's Thread state, readable with a debugger (`OTAFLEET_THREAD_STATE`): what the LED
/// cannot say.
#[allow(unsafe_code)] // a fixed symbol name is an unsafe attribute
#[unsafe(no_mangle)]
static OTAFLEET_THREAD_STATE: AtomicU8 = AtomicU8::new(State::Starting as u8);

#[derive(Clone, Copy)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    /// No (valid) dataset in the provisioning record and none in OpenThread's settings.
    NoCredentials = 1,
    /// Joiner running (feature `thread-joiner`).
    #[cfg_attr(not(feature = "thread-joiner"), allow(dead_code))]
    Joining = 2,
    /// Thread enabled, not attached yet (or detached).
    Attaching = 3,
    /// Attached as a child: the engine runs.
    Attached = 4,
    /// OpenThread refused the dataset or failed to start.
    Failed = 5,
}

pub fn set_state(s: State) {
    OTAFLEET_THREAD_STATE.store(s as u8, Ordering::Relaxed);
}

/// The PHY's executor: an interrupt executor on a software interrupt, above thread mode.
static PHY_EXECUTOR: InterruptExecutor = InterruptExecutor::new();

#[allow(unsafe_code)] // an interrupt handler is unsafe to declare
#[interrupt]
unsafe fn EGU0_SWI0() {
    // SAFETY: the executor is started on this interrupt and nowhere else.
    unsafe { PHY_EXECUTOR.on_interrupt() }
}

/// The radio as OpenThread's PHY side sees it.
type Phy = MacRadio<'static, NrfRadio<'static>, EmbassyTimeTimer>;

/// UDP sockets for the application (the engine's only), and the largest datagram one takes.
const UDP_SOCKETS: usize = 1;
const UDP_RX: usize = lwm2m::RX_DATAGRAM;
/// Frames the software MAC parks while it waits for its own ACK.
const MAC_RX_QUEUE: usize = 4;

#[embassy_executor::task]
async fn phy_task(mut runner: PhyRadioRunner<'static>, radio: Phy) -> ! {
    runner.run(radio).await
}

#[embassy_executor::task]
async fn thread_task(ot: OpenThread<'static>, radio: ProxyRadio<'static>) -> ! {
    ot.run(radio).await
}

#[embassy_executor::task]
async fn watchdog_task(mut handle: WatchdogHandle) -> ! {
    let mut tick = Ticker::every(Duration::from_secs(1));
    loop {
        handle.pet();
        tick.next().await;
    }
}

/// The board's EUI-64: from the factory-programmed device id, marked locally administered (the
/// default build's `radio::eui64`).
fn eui64() -> [u8; 8] {
    let lo = nrf_pac::FICR.deviceid(0).read().to_le_bytes();
    let hi = nrf_pac::FICR.deviceid(1).read().to_le_bytes();
    let mut eui = [hi[3], hi[2], hi[1], hi[0], lo[3], lo[2], lo[1], lo[0]];
    eui[0] = (eui[0] | 0x02) & !0x01; // locally administered, unicast
    eui
}

/// No way onto a network: blink LED1 (nRF52840-DK, P0.13, active low) forever, the watchdog
/// still fed, so the board neither resets in a loop nor looks dead.
async fn idle(led: Peri<'static, peripherals::P0_13>, state: State) -> ! {
    set_state(state);
    let mut led = Output::new(led, Level::High, OutputDrive::Standard);
    loop {
        led.toggle();
        Timer::after_millis(if matches!(state, State::Failed) {
            100
        } else {
            500
        })
        .await;
    }
}

/// Waits until the node is attached to the mesh (a child: an MTD is never a router).
async fn attached(ot: &OpenThread<'static>) {
    while !matches!(
        ot.device_role(),
        DeviceRole::Child | DeviceRole::Router | DeviceRole::Leader
    ) {
        ot.wait_changed().await;
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut cfg = embassy_nrf::config::Config::default();
    cfg.hfclk_source = HfclkSource::ExternalXtal; // the radio needs the crystal
    let p = embassy_nrf::init(cfg);

    // A watchdog the bootloader already started is adopted as it runs; otherwise it starts here.
    let wdt_cfg = wdt::Config::try_new(&p.WDT).unwrap_or_else(|| {
        let mut c = wdt::Config::default();
        c.timeout_ticks = 32_768 * WATCHDOG_S;
        c
    });
    if let Ok((_wdt, [handle])) = Watchdog::try_new(p.WDT, wdt_cfg) {
        if let Ok(token) = watchdog_task(handle) {
            spawner.spawn(token);
        }
    }

    // OpenThread draws from the hardware RNG for keys, nonces and jitter; the engine's seed too.
    static RNG: StaticCell<Rng<'static, embassy_nrf::mode::Blocking>> = StaticCell::new();
    let rng = RNG.init(Rng::new_blocking(p.RNG));
    let mut seed = [0u8; 4];
    rng.blocking_fill_bytes(&mut seed);
    let engine_seed = u32::from_le_bytes(seed);

    static DEVICE: StaticCell<DeviceFlash<Flash>> = StaticCell::new();
    let Ok(device) = DeviceFlash::new(Nvmc::new(p.NVMC), Layout::NRF52840) else {
        boot::halt("the flash layout does not fit this chip");
    };
    let device: &'static DeviceFlash<Flash> = DEVICE.init(device);

    // Self-test and confirm before anything else depends on this image.
    let started = boot::start(device);
    let eui64 = eui64();

    // The PHY with its software MAC, in the interrupt executor.
    static MAC: StaticCell<MacRadioResources<MAC_RX_QUEUE>> = StaticCell::new();
    static PROXY: StaticCell<ProxyRadioResources> = StaticCell::new();
    let phy: Phy = MacRadio::new(
        NrfRadio::new(Ieee802154::new(p.RADIO, Irqs)),
        EmbassyTimeTimer,
        MAC.init(MacRadioResources::new()),
    );
    let (proxy, phy_runner) = ProxyRadio::new(PROXY.init(ProxyRadioResources::new()));
    interrupt::EGU0_SWI0.set_priority(Priority::P6);
    let phy_spawner = PHY_EXECUTOR.start(interrupt::EGU0_SWI0);
    let Ok(phy_token) = phy_task(phy_runner, phy) else {
        boot::halt("phy task");
    };
    phy_spawner.spawn(phy_token);

    // OpenThread, its settings in SETTINGS beside the provisioning record.
    static RESOURCES: StaticCell<OtResources> = StaticCell::new();
    static UDP: StaticCell<OtUdpResources<UDP_SOCKETS, UDP_RX>> = StaticCell::new();
    let settings = credentials::settings(device);
    let ot = match OpenThread::new_with_udp(
        eui64,
        rng,
        settings,
        RESOURCES.init(OtResources::new()),
        UDP.init(OtUdpResources::new()),
    ) {
        Ok(ot) => ot,
        Err(_) => idle(p.P0_13, State::Failed).await,
    };
    let Ok(thread_token) = thread_task(ot.clone(), proxy) else {
        boot::halt("thread task");
    };
    spawner.spawn(thread_token);

    // The network: the provisioned dataset (or OpenThread's own, or the Joiner's).
    match credentials::commission(&ot, device).await {
        Ok(()) => {}
        Err(state) => idle(p.P0_13, state).await,
    }
    let link = if config::THREAD_POLL_MS == 0 {
        ot.set_link_mode(true, false, false)
    } else {
        // Sleepy end device: the radio off between polls of the parent.
        ot.set_link_mode(false, false, false)
            .and_then(|()| ot.set_poll_period(config::THREAD_POLL_MS))
    };
    if link.is_err() || ot.enable_ipv6(true).is_err() || ot.enable_thread(true).is_err() {
        idle(p.P0_13, State::Failed).await;
    }
    set_state(State::Attaching);
    attached(&ot).await;
    set_state(State::Attached);

    engine::run(ot, device, started, eui64, engine_seed).await
}
