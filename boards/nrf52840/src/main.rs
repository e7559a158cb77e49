//! otafleet firmware for an nRF52840 board (tier A of the design: 6LoWPAN on raw 802.15.4, not
//! Thread). The application is linked at ACTIVE's start (memory.x, `Layout::NRF52840`); an
//! embassy-boot bootloader in front of it swaps a staged image in at reset.
//!
//! ```text
//!  RADIO ──radio::run (our glue)──▶ embassy-net-driver-channel ──▶ embassy-net (6LoWPAN, IPv6, UDP)
//!                                                                       │ UdpSocket :5683
//!  NVMC ──DeviceFlash──▶ FlashPlatform (slots, persisted record) ──▶ Engine ◀── lwm2m::run
//! ```
//!
//! At boot ([`boot`]): read this image's header from ACTIVE, run the self-test, and confirm the
//! image if it is on trial (`slots::confirm`), so the bootloader keeps it; a failed self-test
//! resets without confirming, and the bootloader reverts. Then the engine runs on a UDP socket
//! ([`lwm2m`]); when it executes an update it asks for the reset that swaps the new image in.
//! Build-time settings (server, trust anchor, vendor and class ids, version, channel) come from
//! `OTAFLEET_*` variables (see build.rs).
//!
//! With feature `thread` the board runs OpenThread instead (module `ot`, README "Thread
//! (OpenThread)"): the same boot, flash and engine, on OpenThread's UDP socket over the mesh.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "nrf52840 is firmware: build it with `cargo build -p nrf52840 --target thumbv7em-none-eabihf --profile mcu`"
    );
}

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
#[cfg(target_os = "none")]
mod lwm2m;
#[cfg(all(target_os = "none", not(feature = "thread")))]
mod radio;

/// The `thread` build's record formats, tested on the host.
#[cfg(test)]
#[path = "ot/records.rs"]
mod records;

/// The `thread` build's application: OpenThread, the dataset from the provisioning record.
#[cfg(all(target_os = "none", feature = "thread"))]
#[path = "ot/mod.rs"]
mod app;

#[cfg(all(target_os = "none", not(feature = "thread")))]
mod app {
    use embassy_executor::Spawner;
    use embassy_net::{Config, Ipv6Cidr, StackResources, StaticConfigV6};
    use embassy_nrf::config::HfclkSource;
    use embassy_nrf::nvmc::Nvmc;
    use embassy_nrf::radio::ieee802154::Radio;
    use embassy_nrf::rng::Rng;
    use embassy_nrf::wdt::{self, Watchdog, WatchdogHandle};
    use embassy_nrf::{bind_interrupts, peripherals};
    use embassy_time::{Duration, Ticker};
    use lwm2m_client::storage::layout::{DeviceFlash, Layout};
    use panic_halt as _;
    use static_cell::StaticCell;

    use crate::{boot, config, lwm2m, radio};

    // The application must be linked where the layout puts ACTIVE.
    const _: () = assert!(Layout::NRF52840.active().start == config::LINKED_AT);
    const _: () = assert!(Layout::NRF52840.slot_size() == config::LINKED_LEN);

    bind_interrupts!(struct Irqs {
        RADIO => embassy_nrf::radio::InterruptHandler<peripherals::RADIO>;
    });

    pub type Flash = Nvmc<'static>;
    type NetDevice = embassy_net_driver_channel::Device<'static, { radio::MTU }>;

    /// Seconds a hung executor has before the watchdog resets the chip (and, on a trial boot,
    /// the bootloader reverts).
    const WATCHDOG_S: u32 = 8;

    #[embassy_executor::task]
    async fn net_task(mut runner: embassy_net::Runner<'static, NetDevice>) -> ! {
        runner.run().await
    }

    #[embassy_executor::task]
    async fn radio_task(radio: Radio<'static>, runner: radio::Runner) -> ! {
        radio::run(radio, runner).await
    }

    #[embassy_executor::task]
    async fn watchdog_task(mut handle: WatchdogHandle) -> ! {
        let mut tick = Ticker::every(Duration::from_secs(1));
        loop {
            handle.pet();
            tick.next().await;
        }
    }

    #[embassy_executor::main]
    async fn main(spawner: Spawner) {
        let mut cfg = embassy_nrf::config::Config::default();
        cfg.hfclk_source = HfclkSource::ExternalXtal; // the radio needs the crystal
        let p = embassy_nrf::init(cfg);

        // A watchdog the bootloader already started (embassy-boot-nrf does during a swap) is
        // adopted as it runs; otherwise it starts here.
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

        let mut rng = Rng::new_blocking(p.RNG);
        let mut seed = [0u8; 12];
        rng.blocking_fill_bytes(&mut seed);
        let (net_seed, engine_seed) = seed.split_at(8);
        let net_seed = u64::from_le_bytes(net_seed.try_into().unwrap_or([1; 8]));
        let engine_seed = u32::from_le_bytes(engine_seed.try_into().unwrap_or([1; 4]));

        // The flash, cut into the partitions of the layout.
        static DEVICE: StaticCell<DeviceFlash<Flash>> = StaticCell::new();
        let Ok(device) = DeviceFlash::new(Nvmc::new(p.NVMC), Layout::NRF52840) else {
            boot::halt("the flash layout does not fit this chip");
        };
        let device: &'static DeviceFlash<Flash> = DEVICE.init(device);

        // The radio and the network stack.
        let eui64 = radio::eui64();
        let mut nrf_radio = Radio::new(p.RADIO, Irqs);
        nrf_radio.set_channel(config::CHANNEL);
        nrf_radio.set_transmission_power(0);
        static CHANNEL: StaticCell<radio::State> = StaticCell::new();
        let (runner, net_device) = radio::new(CHANNEL.init(radio::State::new()), eui64);

        // Self-test and confirm before anything else depends on this image.
        let started = boot::start(device);

        let Ok(radio_token) = radio_task(nrf_radio, runner) else {
            boot::halt("radio task");
        };
        spawner.spawn(radio_token);
        let address = radio::address_in(config::SERVER, eui64);
        let net_cfg = Config::ipv6_static(StaticConfigV6 {
            address: Ipv6Cidr::new(address, 64),
            gateway: None,
            dns_servers: heapless::Vec::new(),
        });
        static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
        let (stack, net_runner) = embassy_net::new(
            net_device,
            net_cfg,
            RESOURCES.init(StackResources::new()),
            net_seed,
        );
        let Ok(net_token) = net_task(net_runner) else {
            boot::halt("net task");
        };
        spawner.spawn(net_token);

        lwm2m::run(stack, device, started, eui64, engine_seed).await
    }
}
