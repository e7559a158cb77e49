//! Table 1's rows and notes: per condition and setup, completion, median wall time, what crossed
//! the air, the share of the airtime bound; then the targets, ours against the peers, and (with
//! several builds of our client) before against after.

use std::time::Duration;

use sim_network::model::{LossUnit, Mac};

use super::Run;
use super::bound::airtime_bound;
use super::matrix::{Client, Condition, Fetcher, Setup, Source};
use crate::report::{Table, num};

pub struct Inputs<'a> {
    pub setups: &'a [Setup],
    pub conditions: &'a [Condition],
    pub clients: &'a [Client],
    pub seeds: &'a [u64],
    pub runs: &'a [Run],
    pub size: usize,
    pub cap: Duration,
}

/// The runs of one setup under one condition.
struct Cell<'a> {
    runs: Vec<&'a Run>,
    /// Median wall time of the runs that completed.
    wall: Option<f64>,
}

impl Cell<'_> {
    fn done(&self) -> usize {
        self.runs.iter().filter(|r| r.complete).count()
    }

    fn all_done(&self) -> bool {
        !self.runs.is_empty() && self.done() == self.runs.len()
    }

    fn mean(&self, f: impl Fn(&Run) -> f64) -> f64 {
        self.runs.iter().map(|r| f(r)).sum::<f64>() / self.runs.len().max(1) as f64
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn cell<'a>(runs: &'a [Run], setup: usize, condition: usize) -> Cell<'a> {
    let runs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.setup == setup && r.condition == condition)
        .collect();
    let wall = median(
        runs.iter()
            .filter(|r| r.complete)
            .map(|r| r.wall_s)
            .collect(),
    );
    Cell { runs, wall }
}

/// The client build a setup of ours runs, if it is ours from our server.
fn our_client(s: &Setup) -> Option<usize> {
    match (s.fetcher, s.source) {
        (Fetcher::Ours { client, .. }, Source::Ours) => Some(client),
        _ => None,
    }
}

/// "ours" or "ours:after".
fn who(clients: &[Client], client: usize) -> String {
    match clients.get(client) {
        Some(c) if !c.label.is_empty() => format!("ours:{}", c.label),
        _ => "ours".into(),
    }
}

/// The fastest setting of build `client` that completed every seed under `ci`: (name, wall).
fn fastest_ours(inp: &Inputs, ci: usize, client: usize) -> Option<(String, f64)> {
    inp.setups
        .iter()
        .enumerate()
        .filter(|(_, s)| our_client(s) == Some(client))
        .filter_map(|(si, s)| {
            let c = cell(inp.runs, si, ci);
            c.all_done().then_some((s.name.clone(), c.wall?))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn fastest_peer(inp: &Inputs, ci: usize) -> Option<(String, f64)> {
    inp.setups
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_ours())
        .filter_map(|(si, s)| Some((s.name.clone(), cell(inp.runs, si, ci).wall?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

pub fn table(inp: &Inputs) -> Table {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for (ci, c) in inp.conditions.iter().enumerate() {
        let bound = airtime_bound(inp.size, &c.link()).map(|b| b.0);
        for (si, s) in inp.setups.iter().enumerate() {
            let cell = cell(inp.runs, si, ci);
            if cell.runs.is_empty() {
                continue;
            }
            // Where none completed, how far the best run got when it stopped.
            let got = if cell.done() == 0 {
                let best = cell.runs.iter().map(|r| r.received).max().unwrap_or(0);
                format!(" ({:.0} % at best)", best as f64 * 100.0 / inp.size as f64)
            } else {
                String::new()
            };
            rows.push(vec![
                c.hops_label(),
                c.mac_label().to_string(),
                c.loss_label(),
                s.name.clone(),
                format!("{}/{}{got}", cell.done(), cell.runs.len()),
                cell.wall.map_or("-".into(), num),
                num(cell.mean(|r| r.datagrams as f64)),
                num(cell.mean(|r| r.bytes_on_air as f64)),
                num(cell.mean(|r| r.mac_retries as f64)),
                match (bound, cell.wall) {
                    (Some(b), Some(w)) => format!("{:.0} %", b / w * 100.0),
                    _ => "-".into(),
                },
            ]);
            for r in &cell.runs {
                raw.push(serde_json::json!({
                    "setup": s.name, "hops": c.hops, "loss": c.loss,
                    "loss_model": c.unit.name(), "mac": c.mac_label(), "wire": c.wire,
                    "seed": r.seed, "complete": r.complete, "wall_s": r.wall_s,
                    "received": r.received, "datagrams": r.datagrams,
                    "bytes_on_air": r.bytes_on_air, "mesh_airtime_s": r.airtime_s,
                    "mac_retries": r.mac_retries, "error": r.error,
                }));
            }
        }
    }
    let mut notes = vec![about(inp)];
    notes.extend(targets(inp));
    if inp.setups.iter().any(|s| !s.is_ours()) {
        notes.extend(against_peers(inp));
    }
    notes.extend(before_after(inp));
    Table {
        id: "transfer".into(),
        title: format!(
            "1. Transfer on a lossy link: {} KiB through `sim-network proxy`",
            inp.size / 1024
        ),
        columns: [
            "hops",
            "MAC",
            "loss",
            "client (server: ours unless noted)",
            "complete",
            "wall s",
            "datagrams",
            "bytes on air",
            "MAC retries",
            "of airtime bound",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes,
        raw: serde_json::Value::Array(raw),
    }
}

/// What the table shows and how.
fn about(inp: &Inputs) -> String {
    let bounds: Vec<String> = [1, 3]
        .iter()
        .flat_map(|&hops| {
            [Mac::Raw, Mac::THREAD].map(|mac| {
                let c = Condition::radio(hops, 0.0, LossUnit::Frame, mac);
                let (b, block) = airtime_bound(inp.size, &c.link()).unwrap_or((0.0, 0));
                format!(
                    "{} hop(s) {} {b:.1} s ({block}-byte blocks)",
                    hops,
                    c.mac_label()
                )
            })
        })
        .collect();
    format!(
        "{} KiB image; seeds {:?}. Loss is drawn on every hop, per 802.15.4 frame (a datagram is \
         lost if one of its 6LoWPAN fragments is) or per datagram (whatever its size); MAC \"raw\" \
         sends every frame once, \"ACK\" acknowledges and retries each up to 15 times as \
         OpenThread does; hops within two of each other share the air. \"loopback\" is the \
         issue's headline case: the proxy drops 10 % of the datagrams each way and adds no \
         airtime and no delay. Each run is capped at {} s (peers at 600 s); our 1024-byte blocks \
         run on the raw radio with frame loss only at 0 %, 256-byte ones up to 10 % (where a \
         block can still cross whole); libcoap's 64-byte blocks and the fetches from aiocoap's \
         server run on the raw radio with frame loss only. Wall time is the median over the runs \
         that completed; where none did, \"% at best\" is how far into the image the best run \
         had written (for a downloader that writes blocks where they belong, the furthest block, \
         holes included). Datagrams, bytes on air (frames and acknowledgements, MAC header to FCS, \
         every hop) and MAC retries are means over all runs. Airtime bound (every block and \
         request sent once with minimal CoAP headers in the cheapest block size, acknowledgements \
         included with ACK, hops that hear each other taking turns): {}; the last column is \
         bound / wall time.",
        inp.size / 1024,
        inp.seeds,
        inp.cap.as_secs(),
        bounds.join(", ")
    )
}

/// The targets, per build of our client.
fn targets(inp: &Inputs) -> Vec<String> {
    let mut notes = Vec::new();
    for client in 0..inp.clients.len() {
        let mut parts = Vec::new();
        for mac in [Mac::Raw, Mac::THREAD] {
            for unit in [LossUnit::Frame, LossUnit::Datagram] {
                let missing: Vec<String> = inp
                    .conditions
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.wire && c.loss > 0.0 && c.mac == mac && c.unit == unit)
                    .filter(|(ci, _)| fastest_ours(inp, *ci, client).is_none())
                    .map(|(_, c)| format!("{} hop(s) {:.0} %", c.hops, c.loss * 100.0))
                    .collect();
                let name = Condition::radio(1, 0.1, unit, mac);
                let verdict = if missing.is_empty() {
                    "met".to_string()
                } else {
                    format!("NOT met ({})", missing.join(", "))
                };
                parts.push(format!(
                    "100 % completion at 10 and 30 % loss per {}, {}: {verdict}",
                    unit.name(),
                    name.mac_label()
                ));
            }
        }
        for (ci, c) in inp.conditions.iter().enumerate() {
            if c.wire || c.loss > 0.0 {
                continue;
            }
            let bound = airtime_bound(inp.size, &c.link()).map_or(0.0, |b| b.0);
            let best = fastest_ours(inp, ci, client);
            parts.push(match best {
                Some((name, w)) => format!(
                    "≥ 60 % of the airtime bound at 0 %, {} hop(s) {}: {} ({name}, {:.0} %)",
                    c.hops,
                    c.mac_label(),
                    if bound / w >= 0.6 { "met" } else { "NOT met" },
                    bound / w * 100.0
                ),
                None => format!(
                    "≥ 60 % of the airtime bound at 0 %, {} hop(s) {}: NOT met (none completed)",
                    c.hops,
                    c.mac_label()
                ),
            });
        }
        if let Some(ci) = inp.conditions.iter().position(|c| c.wire) {
            let defaults = inp.setups.iter().position(|s| {
                our_client(s) == Some(client)
                    && matches!(s.fetcher, Fetcher::Ours { setting, .. } if setting.block.is_none() && setting.window.is_none())
            });
            let c = defaults.map(|si| cell(inp.runs, si, ci));
            parts.push(match c {
                Some(c) if c.all_done() => {
                    let w = c.wall.unwrap_or(f64::INFINITY);
                    format!(
                        "256 KiB at 10 % per-datagram loss on loopback with the default settings \
                         in under 20 s: {} ({w:.1} s)",
                        if w < 20.0 { "met" } else { "NOT met" }
                    )
                }
                Some(c) if !c.runs.is_empty() => format!(
                    "256 KiB at 10 % per-datagram loss on loopback with the default settings in \
                     under 20 s: NOT met ({}/{} completed)",
                    c.done(),
                    c.runs.len()
                ),
                _ => "headline case: our default settings did not run".into(),
            });
        }
        notes.push(format!(
            "Targets, {}: {}.",
            who(inp.clients, client),
            parts.join("; ")
        ));
    }
    notes
}

/// Per condition, the fastest of ours (each build) against the fastest peer that completed.
fn against_peers(inp: &Inputs) -> Vec<String> {
    inp.conditions
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let peer = fastest_peer(inp, ci);
            let ours: Vec<String> = (0..inp.clients.len())
                .map(|client| match (fastest_ours(inp, ci, client), &peer) {
                    (Some((o, ow)), Some((_, pw))) => {
                        format!("fastest of {o} ({ow:.1} s) is {:.1}× it", pw / ow)
                    }
                    (Some((o, ow)), None) => format!("fastest of {o} ({ow:.1} s)"),
                    (None, _) => format!(
                        "no setting of {} completed every seed",
                        who(inp.clients, client)
                    ),
                })
                .collect();
            let peer = match peer {
                Some((p, pw)) => format!("fastest peer {p} ({pw:.1} s)"),
                None => "no peer completed a single run".into(),
            };
            format!("{}: {peer}; {}.", c.label(), ours.join("; "))
        })
        .collect()
}

/// With several builds: each setting's median wall time, build by build, per condition.
fn before_after(inp: &Inputs) -> Vec<String> {
    if inp.clients.len() < 2 {
        return Vec::new();
    }
    let mut notes = Vec::new();
    for (ci, c) in inp.conditions.iter().enumerate() {
        let mut parts = Vec::new();
        let settings = inp
            .setups
            .iter()
            .filter_map(|s| match (s.fetcher, s.source) {
                (Fetcher::Ours { client: 0, setting }, Source::Ours) => Some(setting),
                _ => None,
            });
        for setting in settings {
            let walls: Vec<String> = (0..inp.clients.len())
                .filter_map(|client| {
                    let si = inp.setups.iter().position(|s| {
                        s.source == Source::Ours && s.fetcher == Fetcher::Ours { client, setting }
                    })?;
                    let cell = cell(inp.runs, si, ci);
                    (!cell.runs.is_empty()).then(|| {
                        let label = &inp.clients[client].label;
                        match cell.wall {
                            Some(w) if cell.all_done() => format!("{label} {w:.1} s"),
                            _ => format!("{label} {}/{} done", cell.done(), cell.runs.len()),
                        }
                    })
                })
                .collect();
            if !walls.is_empty() {
                parts.push(format!("{setting}: {}", walls.join(" → ")));
            }
        }
        if !parts.is_empty() {
            notes.push(format!(
                "{}, ours by build: {}.",
                c.label(),
                parts.join("; ")
            ));
        }
    }
    notes
}
