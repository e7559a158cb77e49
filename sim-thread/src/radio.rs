//! The node's 802.15.4 radio: a bare PHY on the simulator's medium. A transmission asks the
//! simulator for a clear channel assessment and the frame's airtime, then holds the radio for that
//! airtime; frames the medium delivers wait in a queue until OpenThread reads them. Everything
//! above the PHY (ACKs, address filtering, retries, CSMA/CA back-off, security) is OpenThread's own
//! code: this radio is wrapped in the crate's software MAC, `MacRadio`, as an nRF52840 or any
//! other PHY-only radio would be.

use std::fmt;
use std::future::poll_fn;

use embassy_time::{Duration, Timer};
use openthread::{Config, PsduMeta, Radio, RadioCaps, RadioError, RadioErrorKind, SrcMatchConfig};

use crate::exec::{self, FRAMES};

/// The RSSI every received frame reports (a good link: loss is the medium's to decide).
const RSSI_DBM: i8 = -50;

/// What can go wrong on the simulated radio.
#[derive(Debug)]
pub enum SimRadioError {
    /// The channel was busy (CCA failed).
    Busy,
    /// The link to the simulator broke.
    Link(String),
    /// OpenThread handed a frame that no radio could send.
    Invalid,
}

impl fmt::Display for SimRadioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimRadioError::Busy => write!(f, "channel busy"),
            SimRadioError::Link(e) => write!(f, "simulator link: {e}"),
            SimRadioError::Invalid => write!(f, "invalid frame"),
        }
    }
}

impl RadioError for SimRadioError {
    fn kind(&self) -> RadioErrorKind {
        match self {
            // OpenThread counts this as a channel access failure and backs off again.
            SimRadioError::Busy | SimRadioError::Link(_) => RadioErrorKind::TxFailed,
            SimRadioError::Invalid => RadioErrorKind::TxInvalid,
        }
    }
}

/// The simulated PHY.
#[derive(Default)]
pub struct SimRadio {
    receiving: bool,
    channel: u8,
}

impl Radio for SimRadio {
    type Error = SimRadioError;

    async fn init(&mut self) -> Result<RadioCaps, Self::Error> {
        // A bare PHY: `MacRadio` emulates every MAC offload.
        Ok(RadioCaps {
            receive_sensitivity: -100,
            ..RadioCaps::default()
        })
    }

    async fn set_config(&mut self, _config: &Config) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn set_src_match_config(&mut self, _config: &SrcMatchConfig) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn set_receive(&mut self, channel: u8) -> Result<(), Self::Error> {
        if !self.receiving {
            // Frames that arrived while the radio slept were never heard.
            FRAMES.with(|f| f.borrow_mut().clear());
        }
        self.receiving = true;
        self.channel = channel;
        Ok(())
    }

    async fn set_sleep(&mut self) -> Result<(), Self::Error> {
        // A sleeping radio hears nothing: what arrived meanwhile is gone.
        self.receiving = false;
        FRAMES.with(|f| f.borrow_mut().clear());
        Ok(())
    }

    async fn transmit(
        &mut self,
        psdu: &[u8],
        _channel: u8,
        _power: i8,
        cca_threshold: Option<i8>,
        _ack_psdu_buf: Option<&mut [u8]>,
    ) -> Result<Option<PsduMeta>, Self::Error> {
        if !(2..=127).contains(&psdu.len()) {
            return Err(SimRadioError::Invalid);
        }
        let (clear, airtime_us) = exec::transmit(cca_threshold.is_some(), psdu)
            .map_err(|e| SimRadioError::Link(e.to_string()))?;
        if !clear {
            return Err(SimRadioError::Busy);
        }
        // The radio is busy sending for the frame's airtime.
        Timer::after(Duration::from_micros(u64::from(airtime_us))).await;
        Ok(None)
    }

    async fn receive(&mut self, psdu_buf: &mut [u8]) -> Result<PsduMeta, Self::Error> {
        loop {
            let frame = poll_fn(|cx| FRAMES.with(|f| f.borrow_mut().poll_pop(cx))).await;
            if frame.len() > psdu_buf.len() || frame.len() < 2 {
                continue;
            }
            if let Some(dst) = psdu_buf.get_mut(..frame.len()) {
                dst.copy_from_slice(&frame);
            }
            return Ok(PsduMeta {
                len: frame.len(),
                channel: self.channel,
                rssi: Some(RSSI_DBM),
                lqi: None,
            });
        }
    }
}
