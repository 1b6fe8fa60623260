//! Admission for slow work. Memory-only decisions take nothing from here;
//! each kind of slow work (argon2, Entra ID password grants, accounting
//! writes, and the kinds still to come) has its own bound, so one kind
//! cannot starve another, and within a kind one NAS may hold at most half,
//! so one NAS cannot starve the rest. Beyond a bound the request is shed
//! and counted; the NAS retransmits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Room for one kind of work.
pub struct Bound {
    capacity: usize,
    /// What one NAS may hold of `capacity`.
    per_client: usize,
    in_flight: AtomicUsize,
    /// In flight by client name (names survive a reload of the client
    /// table). Only slow work comes here, so a lock is cheap enough.
    by_client: Mutex<HashMap<Arc<str>, usize>>,
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// The kind's whole capacity is in use.
    Full,
    /// This NAS already holds its share.
    ClientShare,
}

impl Shed {
    pub fn describe(self, kind: &str, capacity: usize, per_client: usize) -> String {
        match self {
            Shed::Full => format!("{kind}: all {capacity} places in use; request shed, the NAS will retry"),
            Shed::ClientShare => {
                format!("{kind}: this client already holds its share ({per_client} of {capacity}); request shed")
            }
        }
    }
}

impl Bound {
    /// `capacity` places (at least one); a NAS may take half of them, or
    /// all when there is only one place.
    pub fn new(capacity: usize) -> Arc<Bound> {
        let capacity = capacity.max(1);
        Arc::new(Bound {
            capacity,
            per_client: (capacity / 2).max(1),
            in_flight: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn per_client(&self) -> usize {
        self.per_client
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A place for `client`'s request, held until the permit drops.
    pub fn try_acquire(self: &Arc<Self>, client: &str) -> Result<Permit, Shed> {
        let mut by_client = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if self.in_flight.load(Ordering::Relaxed) >= self.capacity {
            return Err(Shed::Full);
        }
        let key = match by_client.get_key_value(client) {
            Some((_, held)) if *held >= self.per_client => return Err(Shed::ClientShare),
            Some((k, _)) => k.clone(),
            None => Arc::from(client),
        };
        *by_client.entry(key.clone()).or_insert(0) += 1;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            bound: self.clone(),
            client: key,
        })
    }
}

/// One admitted request's place; dropping it frees the place.
pub struct Permit {
    bound: Arc<Bound>,
    client: Arc<str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut by_client = self.bound.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
        self.bound.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_takes_half_and_the_rest_is_left_for_others() {
        let b = Bound::new(4);
        let a1 = b.try_acquire("a").unwrap();
        let _a2 = b.try_acquire("a").unwrap();
        assert_eq!(b.try_acquire("a").err(), Some(Shed::ClientShare));
        let _c1 = b.try_acquire("c").unwrap();
        let _c2 = b.try_acquire("c").unwrap();
        assert_eq!(b.try_acquire("d").err(), Some(Shed::Full));
        assert_eq!(b.in_flight(), 4);
        drop(a1);
        assert_eq!(b.in_flight(), 3);
        let _d1 = b.try_acquire("d").unwrap();
        assert_eq!(b.try_acquire("a").err(), Some(Shed::Full));
    }

    #[test]
    fn permits_give_their_place_back() {
        let b = Bound::new(1);
        assert_eq!(b.per_client(), 1);
        for _ in 0..3 {
            let p = b.try_acquire("a").unwrap();
            assert!(b.try_acquire("a").is_err());
            drop(p);
        }
        assert_eq!(b.in_flight(), 0);
        assert!(b.by_client.lock().unwrap().is_empty());
    }
}
