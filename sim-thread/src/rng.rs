//! OpenThread's random numbers (MLE frame counters, back-offs, keys' nonces) from the node's seed,
//! so that a simulation is the same every time it runs with the same seed.

use core::convert::Infallible;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};

/// ChaCha8 from a seed, behind rand_core 0.10's traits (which the openthread crate asks for).
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl rand_core::TryRng for SimRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

// A simulation's randomness need only be reproducible, not secret.
impl rand_core::TryCryptoRng for SimRng {}
