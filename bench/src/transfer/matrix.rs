//! What table 1 runs: the link conditions (hops, loss, what the loss applies to, the MAC), who
//! fetches (our downloader in several settings and builds, libcoap, aiocoap) from which server,
//! and which pairs are worth their time.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use sim_network::model::{LinkConfig, LossModel, LossUnit, Mac};

/// One of our downloader's settings; `None` leaves the binary's own default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OurSetting {
    pub block: Option<u16>,
    pub window: Option<u8>,
}

impl OurSetting {
    pub const DEFAULTS: OurSetting = OurSetting {
        block: None,
        window: None,
    };

    /// The `lwm2m-client fetch` options that ask for it.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(b) = self.block {
            a.extend(["--block-size".to_string(), b.to_string()]);
        }
        if let Some(w) = self.window {
            a.extend(["--window".to_string(), w.to_string()]);
        }
        a
    }
}

impl FromStr for OurSetting {
    type Err = anyhow::Error;

    /// `default`, `256` (block size, the binary's window) or `64x16` (block size × window).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "default" {
            return Ok(OurSetting::DEFAULTS);
        }
        let (block, window) = match s.split_once('x') {
            Some((b, w)) => (b, Some(w)),
            None => (s, None),
        };
        let what = || format!("{s:?}: give default, a block size (256) or block × window (64x16)");
        let block: u16 = block.parse().with_context(what)?;
        if !block.is_power_of_two() || !(16..=1024).contains(&block) {
            bail!("{}", what());
        }
        let window = window
            .map(str::parse::<u8>)
            .transpose()
            .with_context(what)?;
        Ok(OurSetting {
            block: Some(block),
            window,
        })
    }
}

impl fmt::Display for OurSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.block, self.window) {
            (None, None) => f.write_str("defaults"),
            (Some(b), None) => write!(f, "{b} B"),
            (None, Some(w)) => write!(f, "window {w}"),
            (Some(b), Some(w)) => write!(f, "{b} B × {w}"),
        }
    }
}

/// A build of our client (`lwm2m-client`) to measure.
pub type Client = crate::procs::Build;

/// Who fetches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fetcher {
    /// Our downloader, build `client` (an index into the clients), in `setting`.
    Ours {
        client: usize,
        setting: OurSetting,
    },
    Libcoap {
        block: u16,
    },
    Aiocoap,
}

/// Which server the image comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    Ours,
    Aiocoap,
}

#[derive(Clone, Debug)]
pub struct Setup {
    pub fetcher: Fetcher,
    pub source: Source,
    pub name: String,
}

impl Setup {
    pub fn new(fetcher: Fetcher, source: Source, clients: &[Client]) -> Self {
        let from = match source {
            Source::Ours => "",
            Source::Aiocoap => " ← aiocoap server",
        };
        let who = match fetcher {
            Fetcher::Ours { client, setting } => match clients.get(client) {
                Some(c) if !c.label.is_empty() => format!("ours:{} {setting}", c.label),
                _ => format!("ours {setting}"),
            },
            Fetcher::Libcoap { block } => format!("libcoap -b {block}"),
            Fetcher::Aiocoap => "aiocoap client".into(),
        };
        Setup {
            fetcher,
            source,
            name: format!("{who}{from}"),
        }
    }

    pub fn is_ours(&self) -> bool {
        matches!(self.fetcher, Fetcher::Ours { .. })
    }
}

/// The link of one group of rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    pub hops: u32,
    pub loss: f64,
    pub unit: LossUnit,
    pub mac: Mac,
    /// No airtime and no delays: a lossy UDP relay on loopback (the headline case).
    pub wire: bool,
}

impl Condition {
    /// Loss `loss` per `unit` on each of `hops` hops of the radio.
    pub fn radio(hops: u32, loss: f64, unit: LossUnit, mac: Mac) -> Self {
        Condition {
            hops,
            loss,
            unit,
            mac,
            wire: false,
        }
    }

    /// 10 % of the datagrams lost each way on loopback, nothing else.
    pub fn headline() -> Self {
        Condition {
            hops: 1,
            loss: 0.1,
            unit: LossUnit::Datagram,
            mac: Mac::Raw,
            wire: true,
        }
    }

    /// The model the proxy runs (for the airtime bound).
    pub fn link(&self) -> LinkConfig {
        LinkConfig {
            hops: self.hops,
            loss: if self.loss == 0.0 {
                LossModel::None
            } else {
                LossModel::Bernoulli { p: self.loss }
            },
            loss_unit: self.unit,
            mac: self.mac,
            on_air: !self.wire,
            ..LinkConfig::default()
        }
    }

    /// `sim-network proxy` options for this link (besides addresses and seed).
    pub fn proxy_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--hops".into(),
            self.hops.to_string(),
            "--loss".into(),
            self.loss.to_string(),
            "--loss-model".into(),
            self.unit.name().into(),
            "--mac".into(),
            match self.mac {
                Mac::Raw => "raw".into(),
                Mac::Acked { .. } => "ack".into(),
            },
        ];
        if self.wire {
            for o in ["--no-airtime", "--delay-ms", "0", "--jitter-ms", "0"] {
                a.push(o.into());
            }
            a.extend(["--backhaul-delay-ms".into(), "0".into()]);
        }
        a
    }

    /// Frame loss that nothing below CoAP recovers: a block crosses only if all its frames do.
    pub fn raw_frame_loss(&self) -> bool {
        !self.wire && self.mac == Mac::Raw && self.unit == LossUnit::Frame && self.loss > 0.0
    }

    /// The table's hops column.
    pub fn hops_label(&self) -> String {
        if self.wire {
            "loopback".into()
        } else {
            self.hops.to_string()
        }
    }

    /// The table's MAC column.
    pub fn mac_label(&self) -> &'static str {
        match (self.wire, self.mac) {
            (true, _) => "-",
            (false, Mac::Raw) => "raw",
            (false, Mac::Acked { .. }) => "ACK",
        }
    }

    /// The table's loss column.
    pub fn loss_label(&self) -> String {
        let pct = format!("{:.0} %", self.loss * 100.0);
        match (self.loss == 0.0, self.wire) {
            (true, _) => pct,
            (false, false) => format!("{pct} / {}", self.unit.name()),
            (false, true) => format!("{pct} / datagram each way, no airtime, no delay"),
        }
    }

    /// "3 hop(s), ACK, 10 % / frame", for notes and progress lines.
    pub fn label(&self) -> String {
        if self.wire {
            format!("loopback, {}", self.loss_label())
        } else {
            format!(
                "{} hop(s), {}, {}",
                self.hops,
                self.mac_label(),
                self.loss_label()
            )
        }
    }
}

/// Whether `s` runs under `c`. Our large blocks only where they can cross: without MAC retries a
/// 1024-byte block (11 frames) crosses 3 hops at 10 % frame loss with probability 0.9^33 ≈ 3 %,
/// and a 256-byte one (3 frames) 3 hops at 30 % with 0.7^9 ≈ 4 %; such a run only waits out its
/// retries until the cap (with MAC retries, or loss per datagram, the block size does not decide).
/// libcoap's 64-byte blocks and the fetches from aiocoap's server, which table 1 had before the
/// MAC and the loss unit were added, run on the raw radio with frame loss only, to bound the run.
pub fn runs(s: &Setup, c: &Condition) -> bool {
    let raw_frame = !c.wire && c.mac == Mac::Raw && c.unit == LossUnit::Frame;
    let large = |block: Option<u16>| match block {
        Some(1024) => c.loss == 0.0,
        Some(b) if b >= 256 => c.loss <= 0.1,
        _ => true,
    };
    match (s.fetcher, s.source) {
        (_, Source::Aiocoap) | (Fetcher::Libcoap { block: 64 }, _) => raw_frame,
        (Fetcher::Ours { setting, .. }, _) if c.raw_frame_loss() => large(setting.block),
        _ => true,
    }
}

/// The conditions of a full run: 1 and 3 hops; 0, 10 and 30 % loss per frame and (where there is
/// loss) per datagram; both MAC options; then the headline case.
pub fn full_conditions() -> Vec<Condition> {
    let mut v = Vec::new();
    for mac in [Mac::Raw, Mac::THREAD] {
        for hops in [1, 3] {
            v.push(Condition::radio(hops, 0.0, LossUnit::Frame, mac));
            for unit in [LossUnit::Frame, LossUnit::Datagram] {
                for loss in [0.1, 0.3] {
                    v.push(Condition::radio(hops, loss, unit, mac));
                }
            }
        }
    }
    v.push(Condition::headline());
    v
}

/// A smoke run's: one of each kind, one hop.
pub fn smoke_conditions() -> Vec<Condition> {
    vec![
        Condition::radio(1, 0.0, LossUnit::Frame, Mac::Raw),
        Condition::radio(1, 0.1, LossUnit::Frame, Mac::THREAD),
        Condition::radio(1, 0.1, LossUnit::Datagram, Mac::THREAD),
        Condition::headline(),
    ]
}

/// Every setup: each of our settings for each client build, then the peers, then our first
/// setting of the first build from aiocoap's server.
pub fn setups(clients: &[Client], ours: &[OurSetting], peers: &[Fetcher]) -> Vec<Setup> {
    let mut v = Vec::new();
    for &setting in ours {
        for client in 0..clients.len() {
            v.push(Setup::new(
                Fetcher::Ours { client, setting },
                Source::Ours,
                clients,
            ));
        }
    }
    for &p in peers {
        v.push(Setup::new(p, Source::Ours, clients));
    }
    if let Some(&setting) = ours.first() {
        let fetcher = Fetcher::Ours { client: 0, setting };
        v.push(Setup::new(fetcher, Source::Aiocoap, clients));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(block: u16) -> Setup {
        let setting = OurSetting {
            block: Some(block),
            window: Some(1),
        };
        Setup::new(Fetcher::Ours { client: 0, setting }, Source::Ours, &[])
    }

    #[test]
    fn large_blocks_of_ours_run_only_where_they_can_cross() {
        let raw = |loss| Condition::radio(3, loss, LossUnit::Frame, Mac::Raw);
        assert!(runs(&ours(1024), &raw(0.0)) && !runs(&ours(1024), &raw(0.1)));
        assert!(runs(&ours(256), &raw(0.1)) && !runs(&ours(256), &raw(0.3)));
        assert!(runs(&ours(64), &raw(0.3)));
        // MAC retries or loss per datagram: every block size runs.
        let acked = Condition::radio(3, 0.3, LossUnit::Frame, Mac::THREAD);
        let per_datagram = Condition::radio(3, 0.3, LossUnit::Datagram, Mac::Raw);
        assert!(runs(&ours(1024), &acked) && runs(&ours(1024), &per_datagram));
        let libcoap = |block| Setup::new(Fetcher::Libcoap { block }, Source::Ours, &[]);
        assert!(runs(&libcoap(1024), &raw(0.3)), "peers run everywhere");
        assert!(runs(&libcoap(64), &raw(0.3)) && !runs(&libcoap(64), &acked));
    }

    #[test]
    fn settings_parse_and_name_themselves() {
        let s: OurSetting = "64x16".parse().unwrap();
        assert_eq!(s.to_string(), "64 B × 16");
        assert_eq!(s.args(), ["--block-size", "64", "--window", "16"]);
        let d: OurSetting = "default".parse().unwrap();
        assert_eq!((d.to_string(), d.args().len()), ("defaults".into(), 0));
        assert_eq!(
            "256".parse::<OurSetting>().unwrap().args(),
            ["--block-size", "256"]
        );
        assert!("100".parse::<OurSetting>().is_err());
        assert!("64xz".parse::<OurSetting>().is_err());
    }

    #[test]
    fn a_full_run_covers_both_macs_both_loss_units_and_the_headline() {
        let c = full_conditions();
        assert_eq!(c.len(), 2 * 2 * 5 + 1);
        assert_eq!(c.iter().filter(|c| c.wire).count(), 1);
        let headline = c.last().unwrap();
        assert_eq!(
            headline.proxy_args().join(" "),
            "--hops 1 --loss 0.1 --loss-model datagram --mac raw --no-airtime --delay-ms 0 \
             --jitter-ms 0 --backhaul-delay-ms 0"
        );
        assert!(
            c.iter()
                .any(|c| c.mac == Mac::THREAD && c.unit == LossUnit::Datagram)
        );
    }

    #[test]
    fn labelled_builds_name_their_rows() {
        let clients = [
            Client {
                label: "before".into(),
                path: "a".into(),
            },
            Client {
                label: "after".into(),
                path: "b".into(),
            },
        ];
        let s = setups(&clients, &[OurSetting::DEFAULTS], &[Fetcher::Aiocoap]);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ours:before defaults",
                "ours:after defaults",
                "aiocoap client",
                "ours:before defaults ← aiocoap server"
            ]
        );
    }
}
