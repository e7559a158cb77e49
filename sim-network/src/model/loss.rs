//! Loss. By default per 802.15.4 frame, not per datagram: a datagram of n frames survives a hop
//! only if all n do, which is what makes large CoAP blocks expensive on 6LoWPAN. Loss per datagram
//! ([`LossUnit::Datagram`]) stands for what the MAC cannot see or recover: a relay's full queue, a
//! route that changed, or a link that does not fragment at all.

use super::draw;
use rand_chacha::ChaCha8Rng;

/// How frames are lost on one hop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LossModel {
    /// No frame is lost.
    #[default]
    None,
    /// Every frame is lost independently with probability `p`.
    Bernoulli { p: f64 },
    /// A two-state Markov chain advanced once per frame: bursts of loss (interference, a neighbour
    /// transmitting, a fading dip) rather than independent drops. A frame is lost with `loss_good` or
    /// `loss_bad` depending on the state it is sent in; then the state moves. With `loss_good = 0`,
    /// `loss_bad = 1` this is Gilbert's model: bursts last 1/`p_bad_to_good` frames on average.
    GilbertElliott {
        p_good_to_bad: f64,
        p_bad_to_good: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

impl LossModel {
    /// The long-run fraction of frames lost.
    pub fn stationary_loss(&self) -> f64 {
        match *self {
            LossModel::None => 0.0,
            LossModel::Bernoulli { p } => p,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let moves = p_good_to_bad + p_bad_to_good;
                if moves <= 0.0 {
                    return loss_good; // never leaves the starting (good) state
                }
                let bad = p_good_to_bad / moves;
                (1.0 - bad) * loss_good + bad * loss_bad
            }
        }
    }

    /// Whether every probability lies in [0, 1].
    pub(crate) fn is_valid(&self) -> bool {
        let ok = |p: f64| (0.0..=1.0).contains(&p);
        match *self {
            LossModel::None => true,
            LossModel::Bernoulli { p } => ok(p),
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => ok(p_good_to_bad) && ok(p_bad_to_good) && ok(loss_good) && ok(loss_bad),
        }
    }
}

/// What one draw of a [`LossModel`] decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossUnit {
    /// Each frame (and each MAC acknowledgement) on each hop: MAC retries can recover it.
    #[default]
    Frame,
    /// Each datagram as a whole on each hop, whatever its number of frames, lost above the MAC:
    /// its frames are all sent (and acknowledged), then the datagram is dropped, and no MAC retry
    /// brings it back.
    Datagram,
}

impl LossUnit {
    /// "frame" or "datagram".
    pub fn name(self) -> &'static str {
        match self {
            LossUnit::Frame => "frame",
            LossUnit::Datagram => "datagram",
        }
    }
}

/// A loss model with its state: one per hop and direction, since a burst is a property of the place.
#[derive(Clone, Debug)]
pub struct LossState {
    model: LossModel,
    bad: bool,
}

impl LossState {
    /// Starts in the good state.
    pub fn new(model: LossModel) -> Self {
        LossState { model, bad: false }
    }

    /// The model this state follows.
    pub fn model(&self) -> LossModel {
        self.model
    }

    /// Whether the chain is in its bad state (always false for the other models).
    pub fn is_bad(&self) -> bool {
        self.bad
    }

    /// Sends one unit (a frame, an acknowledgement or a datagram, per [`LossUnit`]): whether it is
    /// lost. Advances the chain by one.
    pub(crate) fn lost(&mut self, rng: &mut ChaCha8Rng) -> bool {
        match self.model {
            LossModel::None => false,
            LossModel::Bernoulli { p } => draw::chance(rng, p),
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let lost = draw::chance(rng, if self.bad { loss_bad } else { loss_good });
                let flip = if self.bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if draw::chance(rng, flip) {
                    self.bad = !self.bad;
                }
                lost
            }
        }
    }
}
