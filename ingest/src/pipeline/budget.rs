//! Bytes held by objects between their fetch and the moment their rows join a commit group.
//!
//! The objects in flight are bounded in number (fetched ahead, decoding, waiting in the channel);
//! this bounds them in bytes too, so that larger objects or records mean fewer in flight, not
//! more memory. Before its fetch an object reserves an estimate of its decoding peak (inflated
//! text, parse tape, rows: a multiple of its listed size); once decoded, its share is settled to
//! the memory its rows hold, and it is given back when they join a group. Reservations are made
//! one at a time in listing order (see [`DecodeBudget::reserve`]), so an object never waits for
//! budget held by objects after it, and one larger than the whole budget goes alone.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::source::SourceObject;

/// Bytes the objects in flight may hold, by default.
pub const DECODE_BUDGET_BYTES: usize = 128 << 20;

/// Permits are KiB.
const UNIT: usize = 1024;
/// The least an object reserves.
const MIN_RESERVE: usize = 256 << 10;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl DecodeBudget {
    pub fn new(bytes: usize) -> Self {
        let total = (bytes / UNIT).max(1);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits until `object`'s estimated share is free. Call for one object after another, in
    /// the order they join groups.
    pub async fn reserve(&self, object: &SourceObject) -> Option<OwnedSemaphorePermit> {
        let want = (estimate(object) / UNIT).clamp(1, self.total);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        self.permits.clone().acquire_many_owned(want).await.ok()
    }

    /// [`DecodeBudget::reserve`] for an object handed over, handed back with its share.
    pub async fn reserve_owned(
        self,
        object: SourceObject,
    ) -> (SourceObject, Option<OwnedSemaphorePermit>) {
        let reserved = self.reserve(&object).await;
        (object, reserved)
    }

    /// Settles `held` to `bytes`, what the object holds now: gives back the excess, or takes
    /// what is free of the rest (never waits: the object is decoded already).
    pub fn settle(&self, held: &mut OwnedSemaphorePermit, bytes: usize) {
        let want = (bytes / UNIT).clamp(1, self.total);
        let have = held.num_permits();
        if want < have {
            drop(held.split(have - want));
        } else if want > have {
            // What is free, up to what is missing: later objects then wait for it.
            let more = (want - have).min(self.permits.available_permits());
            let more = u32::try_from(more).unwrap_or(u32::MAX);
            if more > 0
                && let Ok(extra) = self.permits.clone().try_acquire_many_owned(more)
            {
                held.merge(extra);
            }
        }
    }

    /// Bytes free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

/// The decoding peak of `object`, guessed from its listed size: its text inflated (JSON logs
/// compress about tenfold), the parse tape and the rows, each about the text's size.
fn estimate(object: &SourceObject) -> usize {
    let size = usize::try_from(object.size).unwrap_or(usize::MAX);
    let text = if object.key.ends_with(".gz") {
        size.saturating_mul(10)
    } else {
        size
    };
    text.saturating_mul(3).max(MIN_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> SourceObject {
        SourceObject {
            uri: format!("mem://{key}"),
            key: key.to_owned(),
            version: "1".into(),
            size,
            modified_micros: 0,
        }
    }

    #[tokio::test]
    async fn objects_wait_for_budget_in_order_and_settle_to_what_they_hold() {
        let budget = DecodeBudget::new(10 << 20);
        // 30 MiB estimated: more than the whole budget, so it takes all of it, alone.
        let mut big = budget
            .reserve(&object("a.json.gz", 1 << 20))
            .await
            .expect("permit");
        assert_eq!(budget.free(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(&object("b.log", 1 << 20)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no budget left");
        // Decoded, it holds 4 MiB: the rest is given back and the next object goes.
        budget.settle(&mut big, 4 << 20);
        let next = waiting.await.expect("task").expect("permit");
        assert_eq!(next.num_permits(), 3 * 1024);
        assert_eq!(budget.free(), 3 << 20);
        // Holding more than reserved takes what is free, without waiting.
        budget.settle(&mut big, 64 << 20);
        assert_eq!(budget.free(), 0);
        drop((big, next));
        assert_eq!(budget.free(), 10 << 20);
    }
}
